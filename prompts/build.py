"""Generate the prompt catalogue as Asterisk `wav` files (8 kHz, mono, 16-bit PCM).

Layout under SOUNDS_DIR:
- `<lang>/<name>.wav` — what Asterisk plays (`PromptLibrary` points here).
- `custom/<lang>/<name>.wav` — an operator's recording. It wins over the generated prompt: the
  build converts it (sox: 8 kHz mono 16-bit, any sample rate or channel count in) over
  `<lang>/<name>.wav`. A recording whose name is not in the catalogue is installed too (a
  tenant's own activity, say). Delete the recording and build again to get the spoken one back.
- `.manifest.json` — a hash per installed file (text + voice + audio chain, or the recording's
  bytes). A build redoes only what changed, so it is cheap to run on every deploy.

Spoken prompts come from espeak-ng (voices fi, sv, en), are trimmed of leading and trailing
silence (a key press gets the next prompt at once) and get a short pause after a sentence, so
composed pieces ("Sinulla on" + "kolme" + "uutta viestiä") run together like speech.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from base.progress import SILENT, Progress

from .catalogue import LANGUAGES, PROMPTS, TONES, text

VOICES = {"fi": "fi", "sv": "sv", "en": "en"}
SPEED_WPM = 150  # espeak-ng's default 175 is hurried over a phone line
# Bump when the audio chain below changes: every spoken prompt is then made again.
CHAIN_VERSION = "1"
MANIFEST = ".manifest.json"
CUSTOM = "custom"
# Asterisk's `wav` format: signed 16-bit linear PCM, 8 kHz, mono.
_OUT_FORMAT = ["-t", "wav", "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer"]
_TRIM = ["silence", "1", "0.02", "-45d", "reverse", "silence", "1", "0.02", "-45d", "reverse"]


class BuildError(Exception):
    pass


@dataclass
class BuildReport:
    """Keys are `<lang>/<name>`."""

    generated: list[str] = field(default_factory=list)
    custom: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Job:
    key: str
    digest: str
    out: Path
    lang: str
    name: str
    custom: Path | None


def _sha(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def _digest(lang: str, name: str, custom: Path | None) -> str:
    if custom is not None:
        return "custom:" + _sha(custom.read_bytes())
    if name in TONES:
        return "tone:" + _sha(CHAIN_VERSION, repr(TONES[name]))
    return "tts:" + _sha(CHAIN_VERSION, VOICES[lang], str(SPEED_WPM), text(lang, name))


def _run(cmd: list[str], stdin: bytes | None = None) -> None:
    done = subprocess.run(cmd, input=stdin, capture_output=True, check=False)
    if done.returncode != 0:
        raise BuildError(f"{cmd[0]} failed ({done.returncode}): {done.stderr.decode(errors='replace').strip()}")


def _make(job: _Job, scratch: Path) -> None:
    tmp = job.out.with_name(f".{job.out.name}.tmp")  # same folder: the rename below is atomic
    if job.custom is not None:
        _run(["sox", str(job.custom), *_OUT_FORMAT, str(tmp)])
    elif job.name in TONES:
        freq, seconds = TONES[job.name]
        _run(["sox", "-n", *_OUT_FORMAT, str(tmp), "synth", str(seconds), "sine", str(freq), "vol", "0.5"])
    else:
        spoken = text(job.lang, job.name)
        raw = scratch / f"{job.lang}-{job.name}.wav"
        _run(["espeak-ng", "-v", VOICES[job.lang], "-s", str(SPEED_WPM), "-w", str(raw), "--stdin"], spoken.encode())
        tail = "0.35" if spoken.rstrip()[-1:] in ".!?" else "0.04"
        _run(["sox", str(raw), *_OUT_FORMAT, str(tmp), *_TRIM, "gain", "-n", "-3", "pad", "0.02", tail])
    os.replace(tmp, job.out)  # Asterisk may be playing the old file: it keeps its handle


def _load_manifest(path: Path) -> dict[str, str]:
    try:
        return dict(json.loads(path.read_text())["prompts"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return {}  # unreadable: rebuild everything, which is always safe


def _save_manifest(path: Path, prompts: dict[str, str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"version": 1, "prompts": dict(sorted(prompts.items()))}, indent=1) + "\n")
    os.replace(tmp, path)


def _custom_names(sounds_dir: Path, lang: str) -> list[str]:
    folder = sounds_dir / CUSTOM / lang
    return sorted(p.stem for p in folder.glob("*.wav") if p.is_file()) if folder.is_dir() else []


def build(
    sounds_dir: Path,
    *,
    languages: Iterable[str] = LANGUAGES,
    names: Iterable[str] | None = None,
    force: bool = False,
    jobs: int | None = None,
    progress: Progress = SILENT,
) -> BuildReport:
    """Make every prompt (or only NAMES) in LANGUAGES under SOUNDS_DIR; see the module doc.

    A full build (NAMES not given) also removes files it installed earlier whose prompt or
    recording is gone. Two builds must not run at once on the same folder.
    """
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise BuildError(f"{tool} is not installed (Debian: apt-get install espeak-ng sox)")
    sounds_dir = Path(sounds_dir).absolute()
    langs = list(languages)
    for lang in langs:
        if lang not in LANGUAGES:
            raise BuildError(f"unknown language {lang!r}")
    subset = list(names) if names is not None else None
    manifest_path = sounds_dir / MANIFEST
    manifest = _load_manifest(manifest_path)
    report = BuildReport()
    todo: list[_Job] = []
    wanted: set[str] = set()
    for lang in langs:
        (sounds_dir / lang).mkdir(parents=True, exist_ok=True)
        customs = _custom_names(sounds_dir, lang)
        custom_set = set(customs)
        for name in subset if subset is not None else dict.fromkeys([*PROMPTS, *TONES, *customs]):
            custom: Path | None = sounds_dir / CUSTOM / lang / f"{name}.wav"
            if name not in custom_set:
                custom = None
                if name not in PROMPTS and name not in TONES:
                    raise BuildError(f"no prompt {name!r} in the catalogue and no recording in {CUSTOM}/{lang}/")
            key = f"{lang}/{name}"
            wanted.add(key)
            job = _Job(key, _digest(lang, name, custom), sounds_dir / lang / f"{name}.wav", lang, name, custom)
            if not force and manifest.get(key) == job.digest and job.out.is_file():
                report.skipped.append(key)
            else:
                todo.append(job)
    progress.begin("building prompts", len(todo))
    try:
        failures = _run_all(todo, manifest, report, jobs, progress)
    finally:
        progress.end()
    if subset is None:
        for key in sorted(k for k in manifest if k.split("/")[0] in langs and k not in wanted):
            (sounds_dir / f"{key}.wav").unlink(missing_ok=True)
            del manifest[key]
            report.removed.append(key)
    _save_manifest(manifest_path, manifest)
    if failures:
        raise BuildError(f"{len(failures)} prompt(s) failed, first: {failures[0]}")
    return report


def _run_all(todo: list[_Job], manifest: dict[str, str], report: BuildReport, jobs: int | None,
             progress: Progress) -> list[str]:
    """Run the jobs in parallel (each is two short processes); record what succeeded."""
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="vipbx-prompts-") as scratch, ThreadPoolExecutor(jobs or os.cpu_count() or 2) as pool:
        futures = [(job, pool.submit(_make, job, Path(scratch))) for job in todo]
        for job, future in futures:
            try:
                future.result()
            except (BuildError, OSError) as exc:
                failures.append(f"{job.key}: {exc}")
                continue
            finally:
                progress.advance()
            manifest[job.key] = job.digest
            (report.custom if job.custom is not None else report.generated).append(job.key)
    return failures
