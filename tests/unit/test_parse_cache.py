"""Files parsed before are read back from the home's cache instead of parsed again, with the same
configuration and the same problems as a parse; a changed, broken or foreign entry is parsed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from asterisk_conf import yamlsource
from asterisk_conf.validate import ParseCache, load_config, validate_files

pytest_plugins = ("example_copies",)  # the `files` fixture


class CountingParser:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.parsed: list[str] = []
        real = yamlsource.parse_yaml

        def parse(source: bytes | str, file: str) -> yamlsource.Document:
            self.parsed.append(Path(file).name)
            return real(source, file)

        monkeypatch.setattr(yamlsource, "parse_yaml", parse)


def test_a_second_load_parses_nothing_and_gives_the_same_configuration(
        files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ParseCache(tmp_path / "cache")
    first = load_config(files, cache)
    counter = CountingParser(monkeypatch)
    again = load_config(files, cache)
    assert counter.parsed == []
    assert again == first == load_config(files)


def test_only_a_changed_file_is_parsed_again(files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ParseCache(tmp_path / "cache")
    load_config(files, cache)
    files[2].write_text(files[2].read_text().replace("James Taylor", "James Tailor"))
    counter = CountingParser(monkeypatch)
    config = load_config(files, cache)
    assert counter.parsed == ["borealis.yaml"]
    assert any(u.name == "James Tailor" for t in config.tenants for u in t.users)


def test_problems_are_the_same_from_the_cache_and_a_file_with_problems_is_never_kept(
        files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ParseCache(tmp_path / "cache")
    # A problem the checks find (not the parser): its line comes from the cached file's text.
    files[1].write_text(files[1].read_text().replace('extension: "102"', 'extension: "101"'))
    expected = validate_files(files)
    assert expected and validate_files(files, cache) == expected
    assert validate_files(files, cache) == expected  # now from the cache
    files[2].write_text(files[2].read_text() + "  bogus: [\n")  # a YAML error: not cached
    broken = validate_files(files, cache)
    counter = CountingParser(monkeypatch)
    assert validate_files(files, cache) == broken
    assert counter.parsed == ["borealis.yaml"]


def test_a_broken_or_foreign_entry_is_parsed_again(files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ParseCache(tmp_path / "cache")
    expected = load_config(files, cache)
    # The parsed files (the checked tenants beside them: test_checked_tenants.py).
    entries = sorted(p for p in (tmp_path / "cache").iterdir() if not p.name.startswith("tenant-"))
    assert len(entries) == 3
    entries[0].write_bytes(b"\xff garbage")
    counter = CountingParser(monkeypatch)
    assert load_config(files, cache) == expected
    assert len(counter.parsed) == 1
    monkeypatch.setattr(yamlsource, "_DIGEST", [b"another parser"])
    assert load_config(files, cache) == expected
    assert len(counter.parsed) == 4


def test_entries_are_private_and_an_unwritable_folder_is_only_not_used(files: list[Path], tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    load_config(files, ParseCache(folder))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o600}
    blocked = tmp_path / "file-in-the-way"
    blocked.write_text("")
    assert load_config(files, ParseCache(blocked / "cache")) == load_config(files)


def test_entries_unused_for_a_week_are_pruned(files: list[Path], tmp_path: Path) -> None:
    cache = ParseCache(tmp_path / "cache")
    load_config(files, cache)
    entry = {f.name: tmp_path / "cache" / f"{cache.key(f.read_bytes())}.marshal" for f in files}
    for path in entry.values():  # all a month old: those read back below are marked used again
        os.utime(path, (path.stat().st_atime - 30 * 86400, path.stat().st_mtime - 30 * 86400))
    recent = tmp_path / "cache" / "recent.marshal"
    recent.write_bytes(b"")
    os.utime(recent, (recent.stat().st_atime - 6 * 86400, recent.stat().st_mtime - 6 * 86400))
    files[2].write_text(files[2].read_text() + "\n")  # borealis.yaml changes: parsed, then the prune
    load_config(files, cache)
    assert entry["platform.yaml"].exists() and entry["acme.yaml"].exists()
    assert not entry["borealis.yaml"].exists()  # its old text: unused for a month
    assert recent.exists()  # six days
    assert (tmp_path / "cache" / f"{cache.key(files[2].read_bytes())}.marshal").exists()
