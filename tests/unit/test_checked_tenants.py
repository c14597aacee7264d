"""Tenants checked before come back from the cache (asterisk_conf.checked_tenants) with the same
model, while the checks across tenants stay whole: a value used twice, a broken tenant, a changed
platform give exactly the problems of a run without the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from asterisk_conf import validate
from asterisk_conf.schema import tenant as tenant_schema
from asterisk_conf.validate import ParseCache, load_config, validate_files

pytest_plugins = ("example_copies",)  # the `files` fixture


class CountingChecks:
    """The tenants whose check runs (not the ones the cache gives)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.checked: list[str] = []
        real = tenant_schema.tenant

        def counted(chk, loc, value, scope):  # type: ignore[no-untyped-def]
            self.checked.append(value.get("id") if isinstance(value, dict) else "?")
            return real(chk, loc, value, scope)

        monkeypatch.setattr(validate, "tenant", counted)


def test_unchanged_tenants_are_not_checked_again_and_give_the_same_model(
        files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ParseCache(tmp_path / "cache")
    first = load_config(files, cache)
    assert first == load_config(files)
    counter = CountingChecks(monkeypatch)
    assert load_config(files, ParseCache(tmp_path / "cache")) == first
    assert counter.checked == []  # both came back from the cache
    acme = files[1].read_text(encoding="utf-8")
    files[1].write_text(acme.replace("Anna Virtanen", "Anna Korhonen"), encoding="utf-8")
    changed = load_config(files, ParseCache(tmp_path / "cache"))
    assert counter.checked == ["acme"]
    assert changed.tenants[0].users[0].name == "Anna Korhonen"
    monkeypatch.undo()
    assert changed == load_config(files)


def test_a_number_used_twice_across_a_cached_tenant_is_named_as_without_the_cache(
        files: list[Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    load_config(files, ParseCache(cache))
    acme = files[1].read_text(encoding="utf-8")
    # Borealis (unchanged, cached) has James's number; Acme now gives it to Anna too.
    files[1].write_text(acme.replace('"+358401110001"', '"+358501220001"', 1), encoding="utf-8")
    problems = validate_files(files, ParseCache(cache))
    assert problems == validate_files(files)
    assert any("+358501220001" in p.message and "used more than once" in p.message for p in problems)
    assert {Path(p.file).name for p in problems} >= {"acme.yaml", "borealis.yaml"}


def test_a_broken_tenant_is_never_cached_and_is_reported_each_time(files: list[Path], tmp_path: Path) -> None:
    borealis = files[2].read_text(encoding="utf-8")
    files[2].write_text(borealis.replace('extension: "101"', 'extension: "0101"', 1), encoding="utf-8")
    for _ in range(2):
        problems = validate_files(files, ParseCache(tmp_path / "cache"))
        assert problems == validate_files(files) and problems


def test_a_changed_platform_checks_every_tenant_again(files: list[Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    load_config(files, ParseCache(tmp_path / "cache"))
    platform = files[0].read_text(encoding="utf-8")
    assert "default_language: fi" in platform
    files[0].write_text(platform.replace("default_language: fi", "default_language: en"), encoding="utf-8")
    reference = load_config(files)
    counter = CountingChecks(monkeypatch)
    assert load_config(files, ParseCache(tmp_path / "cache")) == reference
    assert counter.checked == ["acme", "borealis"]


def test_two_cached_tenants_that_clash_are_checked_again(files: list[Path], tmp_path: Path) -> None:
    """Each was checked alone before: Anna's number moved from Acme to Borealis in one run,
    and the old Acme came back in the next. Both come from the cache, and still clash."""
    cache = tmp_path / "cache"
    acme, borealis = files[1].read_text(encoding="utf-8"), files[2].read_text(encoding="utf-8")
    load_config(files, ParseCache(cache))
    files[1].write_text(acme.replace('"+358401110001"', '"+358401119999"', 1), encoding="utf-8")
    files[2].write_text(borealis.replace('"+358501220001"', '"+358401110001"', 1), encoding="utf-8")
    load_config(files, ParseCache(cache))
    files[1].write_text(acme, encoding="utf-8")  # the first Acme: cached, and so is this Borealis
    problems = validate_files(files, ParseCache(cache))
    assert problems == validate_files(files)
    assert any("+358401110001" in p.message and "used more than once" in p.message for p in problems)
