"""Prompt catalogue: composition per language, catalogue completeness, the build, the library, the CLI."""

from __future__ import annotations

import math
import shutil
import struct
import time
import wave
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from base.model import LANGUAGES as MODEL_LANGUAGES
from cli.prompts import prompts_group
from prompts import PromptLibrary, catalogue, speech
from prompts import build as building
from prompts.catalogue import ACTIVITIES, LANGUAGES, PROMPTS, TONES

NOW = datetime(2024, 8, 7, 15, 30)  # a Wednesday
HAVE_TOOLS = shutil.which("espeak-ng") is not None and shutil.which("sox") is not None
needs_tools = pytest.mark.skipif(not HAVE_TOOLS, reason="espeak-ng and sox are needed to build prompts")


def said(lang: str, names: list[str]) -> str:
    """The sentence a caller hears, as text."""
    return " ".join(catalogue.text(lang, n) for n in names)


# --- catalogue ----------------------------------------------------------------------------


def test_catalogue_languages_match_the_model() -> None:
    assert LANGUAGES == MODEL_LANGUAGES
    assert catalogue.DEFAULT_LANGUAGE == "fi"


def test_every_prompt_has_a_text_in_every_language_and_names_are_file_safe() -> None:
    for name, texts in PROMPTS.items():
        assert len(texts) == len(LANGUAGES), name
        assert all(t.strip() and not any(ch.isdigit() for ch in t) for t in texts), name  # words, not digits
        assert name.replace("-", "").isalnum() and name == name.lower(), name
    assert not set(PROMPTS) & set(TONES)
    for required in [
        "vm-main-menu", "vm-message-menu", "vm-you-have", "vm-new-1", "vm-new-n", "vm-no-messages",
        "vm-enter-mailbox", "vm-enter-pin", "vm-pin-wrong", "vm-locked", "vm-goodbye", "vm-invalid-key",
        "vm-deleted", "vm-no-more-messages", "vm-first-message", "vm-greeting-record-after-beep",
        "vm-greeting-saved", "vm-greeting-deleted", "vm-no-greeting", "vm-default-greeting-pre",
        "vm-default-greeting-post", "vm-press-1-customer-service", "vm-unknown-number-apology",
        "vm-message-from", "vm-received-at", "vm-unknown-caller", "fc-forward-set", "fc-forward-removed",
        "fc-refused-voicemail-number", "cw-on", "cw-off", "cw-is-on", "cw-is-off", "beep",
    ]:
        assert required in catalogue.names(), required


def _everything_speech_can_say() -> dict[str, set[str]]:
    """Names produced by speech.py over a wide sweep of inputs, per language."""
    used: dict[str, set[str]] = {lang: set() for lang in LANGUAGES}
    start = datetime(2023, 12, 20)
    moments = [start + timedelta(days=d, hours=h, minutes=m) for d in range(400) for h, m in ((0, 0), (9, 5), (13, 30))]
    for lang in LANGUAGES:
        add = used[lang].update
        for n in range(10001):
            add(speech.number(lang, n))
        for new, old in [(0, 0), (0, 1), (1, 0), (2, 5), (21, 1)]:
            add(speech.count_messages(lang, new, old))
        add(speech.digits(lang, "+358 (40) 123-4567*#"))
        for when in moments:
            now = when + timedelta(days=(when.day % 9))
            add(speech.envelope(lang, "+358401234567", when, now))
            add(speech.envelope(lang, None, when, now))
            add(speech.until_phrase(lang, now, when))
            add(speech.clock(lang, when))
        for activity in ACTIVITIES:
            add(speech.activity_sentence(lang, activity, NOW + timedelta(days=3), NOW))
        add(speech.default_greeting(lang, "+358401234567"))
        add(speech.default_greeting(lang, None))
        add(speech.forward_set(lang, "+358401234567"))
    return used


def test_every_name_speech_uses_is_in_the_catalogue_in_all_languages() -> None:
    for lang, used in _everything_speech_can_say().items():
        missing = used - set(PROMPTS)
        assert not missing, (lang, sorted(missing))
        for name in used:
            assert catalogue.text(lang, name)


# --- numbers and digits -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "fi", "sv", "en"),
    [
        (0, "nolla", "noll", "zero"),
        (1, "yksi", "ett", "one"),
        (2, "kaksi", "två", "two"),
        (20, "kaksikymmentä", "tjugo", "twenty"),
        (21, "kaksikymmentä yksi", "tjugo ett", "twenty one"),
        (100, "sata", "hundra", "one hundred"),
        (105, "sata viisi", "hundra fem", "one hundred and five"),
        (1000, "tuhat", "tusen", "one thousand"),
        (1100, "tuhat sata", "tusen hundra", "one thousand one hundred"),
        (2023, "kaksituhatta kaksikymmentä kolme", "tvåtusen tjugo tre", "two thousand and twenty three"),
        (9999, "yhdeksäntuhatta yhdeksänsataa yhdeksänkymmentä yhdeksän", "niotusen niohundra nittio nio",
         "nine thousand nine hundred and ninety nine"),
    ],
)
def test_numbers_in_words(n: int, fi: str, sv: str, en: str) -> None:
    assert [said(lang, speech.number(lang, n)) for lang in LANGUAGES] == [fi, sv, en]


def test_finnish_compounds_are_composed_from_parts() -> None:
    assert speech.number("fi", 23) == ["num-20", "num-3"]
    assert speech.number("fi", 1234) == ["num-1000", "num-200", "num-30", "num-4"]


def test_numbers_out_of_range() -> None:
    assert speech.number("fi", 12345) == speech.digits("fi", "12345")  # read out, never a failed call
    with pytest.raises(ValueError):
        speech.number("fi", -1)
    with pytest.raises(ValueError):
        speech.number("de", 1)


def test_phone_number_digit_by_digit() -> None:
    assert speech.digits("fi", "+358401234567")[:4] == ["plus", "digit-3", "digit-5", "digit-8"]
    assert said("sv", speech.digits("sv", "+46 8-12")) == "plus fyra sex åtta ett två"
    assert said("en", speech.digits("en", "*43#")) == "star four three hash"
    for bad in ["", "abc", "040/123"]:
        with pytest.raises(ValueError):
            speech.digits("fi", bad)


# --- message counts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("new", "old", "fi", "sv", "en"),
    [
        (1, 3, "Sinulla on yksi uusi viesti ja kolme vanhaa viestiä",
         "Du har ett nytt meddelande och tre gamla meddelanden", "You have one new message and three old messages"),
        (3, 1, "Sinulla on kolme uutta viestiä ja yksi vanha viesti",
         "Du har tre nya meddelanden och ett gammalt meddelande", "You have three new messages and one old message"),
        (2, 0, "Sinulla on kaksi uutta viestiä", "Du har två nya meddelanden", "You have two new messages"),
        (21, 0, "Sinulla on kaksikymmentä yksi uutta viestiä", "Du har tjugo ett nya meddelanden",
         "You have twenty one new messages"),
        (0, 1, "Ei uusia viestejä. Sinulla on yksi vanha viesti", "Inga nya meddelanden. Du har ett gammalt meddelande",
         "No new messages. You have one old message"),
        (0, 0, "Sinulla ei ole viestejä.", "Du har inga meddelanden.", "You have no messages."),
    ],
)
def test_count_messages_plural_forms(new: int, old: int, fi: str, sv: str, en: str) -> None:
    assert [said(lang, speech.count_messages(lang, new, old)) for lang in LANGUAGES] == [fi, sv, en]


def test_count_messages_names() -> None:
    assert speech.count_messages("fi", 1, 3) == ["vm-you-have", "vm-new-1", "and", "num-3", "vm-old-n"]
    with pytest.raises(ValueError):
        speech.count_messages("fi", -1, 0)


# --- dates and times ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "fi", "sv", "en"),
    [
        (datetime(2024, 8, 7, 14, 5), "tänään kello neljätoista nolla viisi", "i dag klockan fjorton noll fem",
         "today at two oh five p.m."),
        (datetime(2024, 8, 6, 9, 0), "eilen kello yhdeksän", "i går klockan nio", "yesterday at nine a.m."),
        (datetime(2024, 8, 6, 0, 30), "eilen kello nolla kolmekymmentä", "i går klockan noll trettio",
         "yesterday at twelve thirty a.m."),
        (datetime(2024, 8, 5, 12, 45), "maanantaina kello kaksitoista neljäkymmentä viisi",
         "i måndags klockan tolv fyrtio fem", "on Monday at twelve forty five p.m."),
        (datetime(2024, 7, 31, 23, 59),
         "keskiviikkona kolmantenakymmenentenäensimmäisenä heinäkuuta kello kaksikymmentä kolme viisikymmentä yhdeksän",
         "onsdagen den trettioförsta juli klockan tjugo tre femtio nio",
         "on Wednesday July thirty-first at eleven fifty nine p.m."),
    ],
)
def test_datetime_phrase(when: datetime, fi: str, sv: str, en: str) -> None:
    assert [said(lang, speech.datetime_phrase(lang, when, NOW)) for lang in LANGUAGES] == [fi, sv, en]


def test_datetime_phrase_across_the_year_change() -> None:
    now = datetime(2024, 1, 2, 10, 0)
    # Three days ago is still "last Saturday", not a date with a year.
    assert speech.datetime_phrase("fi", datetime(2023, 12, 30, 8, 0), now)[0] == "wd-on-6"
    older = datetime(2023, 12, 12, 8, 0)
    assert said("fi", speech.datetime_phrase("fi", older, now)) == (
        "tiistaina kahdentenatoista joulukuuta kaksituhatta kaksikymmentä kolme kello kahdeksan")
    assert said("en", speech.datetime_phrase("en", older, now)) == (
        "on Tuesday December twelfth two thousand and twenty three at eight a.m.")
    assert "num-2000" not in speech.datetime_phrase("sv", datetime(2024, 3, 1, 8, 0), NOW)  # this year: no year


def test_aware_datetimes_are_said_in_nows_zone() -> None:
    helsinki = timezone(timedelta(hours=3))
    now = datetime(2024, 8, 7, 1, 0, tzinfo=helsinki)
    when = datetime(2024, 8, 6, 22, 5, tzinfo=UTC)  # 01.05 in Helsinki: today
    assert said("fi", speech.datetime_phrase("fi", when, now)) == "tänään kello yksi nolla viisi"


@pytest.mark.parametrize(
    ("until", "fi", "sv", "en"),
    [
        (datetime(2024, 8, 7, 16, 0), "kello kuuteentoista asti", "till klockan sexton", "until four p.m."),
        (datetime(2024, 8, 7, 16, 30), "kello kuusitoista kolmekymmentä asti", "till klockan sexton trettio",
         "until four thirty p.m."),
        (datetime(2024, 8, 8, 9, 0), "huomiseen kello yhdeksään asti", "till i morgon klockan nio",
         "until tomorrow at nine a.m."),
        (datetime(2024, 8, 9, 0, 0), "perjantaihin asti", "till fredag", "until Friday"),
        (datetime(2024, 8, 16, 0, 0), "perjantaihin kuudenteentoista elokuuta asti",
         "till fredagen den sextonde augusti", "until Friday August sixteenth"),
        (datetime(2025, 1, 6, 8, 0), "maanantaihin kuudenteen tammikuuta kaksituhatta kaksikymmentä viisi kello kahdeksaan asti",
         "till måndagen den sjätte januari tvåtusen tjugo fem klockan åtta",
         "until Monday January sixth two thousand and twenty five at eight a.m."),
    ],
)
def test_until_phrase(until: datetime, fi: str, sv: str, en: str) -> None:
    assert [said(lang, speech.until_phrase(lang, until, NOW)) for lang in LANGUAGES] == [fi, sv, en]


def test_activity_sentence() -> None:
    names = speech.activity_sentence("fi", "vacation", datetime(2024, 8, 12), NOW)
    assert said("fi", names) == "Tavoittelemasi henkilö on lomalla maanantaihin asti"
    assert said("en", speech.activity_sentence("en", "meeting")) == "The person you are calling is in a meeting"
    with pytest.raises(ValueError):
        speech.activity_sentence("fi", "skiing")


# --- envelope and greetings ---------------------------------------------------------------


def test_envelope_with_and_without_a_readable_number() -> None:
    when = datetime(2024, 8, 7, 14, 5)
    assert said("fi", speech.envelope("fi", "+35840", when, NOW)) == (
        "Viesti numerosta plus kolme viisi kahdeksan neljä nolla vastaanotettu tänään kello neljätoista nolla viisi")
    assert said("sv", speech.envelope("sv", "0401", when, NOW)) == (
        "Meddelande från nummer noll fyra noll ett mottaget i dag klockan fjorton noll fem")
    for caller in [None, "", "anonymous", "Restricted", "sip:foo@bar"]:
        assert speech.envelope("en", caller, when, NOW)[:2] == ["vm-unknown-caller", "vm-received-at"]


def test_default_greeting_says_the_number() -> None:
    assert said("en", speech.default_greeting("en", "+3581")) == (
        "The subscriber at number plus three five eight one is not available. Please leave a message after the tone.")
    assert speech.default_greeting("fi", None) == ["vm-default-greeting-pre", "vm-default-greeting-post"]


# --- library ------------------------------------------------------------------------------


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF")


def test_media_uri_is_absolute_without_extension_and_falls_back(tmp_path: Path) -> None:
    _touch(tmp_path / "fi" / "vm-goodbye.wav")
    _touch(tmp_path / "fi" / "beep.wav")
    _touch(tmp_path / "sv" / "vm-goodbye.wav")
    lib = PromptLibrary(tmp_path)
    assert lib.media("sv", "vm-goodbye") == f"sound:{tmp_path}/sv/vm-goodbye"
    assert lib.media("sv", "beep") == f"sound:{tmp_path}/fi/beep"  # missing in sv: the default language
    assert lib.media("en", "vm-deleted") == f"sound:{tmp_path}/en/vm-deleted"  # missing everywhere: still a URI
    assert lib.compose("sv", ["vm-goodbye", "beep"]) == [f"sound:{tmp_path}/sv/vm-goodbye", f"sound:{tmp_path}/fi/beep"]
    assert PromptLibrary(tmp_path, default_language="sv").media("en", "vm-goodbye") == f"sound:{tmp_path}/sv/vm-goodbye"
    for bad in ["../secrets", "a/b", "x.wav", ""]:
        with pytest.raises(ValueError):
            lib.media("fi", bad)


def test_relative_sounds_dir_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert PromptLibrary(Path("sounds")).media("fi", "beep") == f"sound:{tmp_path}/sounds/fi/beep"


# --- build --------------------------------------------------------------------------------

SUBSET = ["vm-goodbye", "num-3", "vm-new-n", "beep"]


def _format(path: Path) -> tuple[int, int, int, float]:
    with wave.open(str(path)) as w:
        return w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes() / w.getframerate()


def _write_recording(path: Path, seconds: float = 0.5, rate: int = 22050) -> None:
    """A stereo 22 kHz tone: not Asterisk's format, so the build must convert it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = b"".join(
        struct.pack("<hh", v, v) for v in (int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(int(seconds * rate)))
    )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)


@needs_tools
def test_build_makes_8khz_mono_16bit_wav_files(tmp_path: Path) -> None:
    report = building.build(tmp_path, languages=["fi", "sv", "en"], names=SUBSET)
    assert sorted(report.generated) == sorted(f"{lang}/{name}" for lang in LANGUAGES for name in SUBSET)
    for lang in LANGUAGES:
        for name in SUBSET:
            rate, channels, width, seconds = _format(tmp_path / lang / f"{name}.wav")
            assert (rate, channels, width) == (8000, 1, 2)
            assert 0.1 < seconds < 5
    assert abs(_format(tmp_path / "fi" / "beep.wav")[3] - TONES["beep"][1]) < 0.01
    assert not list(tmp_path.rglob("*.tmp"))


class Recorded:
    """A Progress that remembers what it was told."""

    def __init__(self) -> None:
        self.stages: list[tuple[str, int]] = []
        self.steps = 0
        self.ended = 0

    def begin(self, label: str, total: int) -> None:
        self.stages.append((label, total))

    def advance(self, steps: int = 1) -> None:
        self.steps += steps

    def end(self) -> None:
        self.ended += 1


@needs_tools
def test_build_reports_one_step_per_prompt_it_makes(tmp_path: Path) -> None:
    shown = Recorded()
    building.build(tmp_path, languages=["fi"], names=SUBSET, progress=shown)
    assert (shown.stages, shown.steps, shown.ended) == ([("building prompts", len(SUBSET))], len(SUBSET), 1)
    again = Recorded()
    building.build(tmp_path, languages=["fi"], names=SUBSET, progress=again)  # nothing to make
    assert (again.stages, again.steps) == ([("building prompts", 0)], 0)


def test_progress_is_shown_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from base.progress import SILENT
    from cli.progress import TerminalProgress, progress

    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    assert progress() is SILENT
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert isinstance(progress(), TerminalProgress)


@needs_tools
def test_manifest_skips_unchanged_prompts_and_redoes_changed_or_missing_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    building.build(tmp_path, languages=["fi"], names=SUBSET)
    goodbye = tmp_path / "fi" / "vm-goodbye.wav"
    stamp = goodbye.stat().st_mtime_ns
    again = building.build(tmp_path, languages=["fi"], names=SUBSET)
    assert again.generated == [] and sorted(again.skipped) == sorted(f"fi/{n}" for n in SUBSET)
    assert goodbye.stat().st_mtime_ns == stamp

    monkeypatch.setitem(PROMPTS, "vm-goodbye", ("Hei hei ja kiitos soitosta.", "Hej då.", "Goodbye."))
    (tmp_path / "fi" / "num-3.wav").unlink()
    changed = building.build(tmp_path, languages=["fi"], names=SUBSET)
    assert sorted(changed.generated) == ["fi/num-3", "fi/vm-goodbye"]
    assert building.build(tmp_path, languages=["fi"], names=SUBSET, force=True).generated


@needs_tools
def test_operator_recording_wins_and_removing_it_restores_the_spoken_prompt(tmp_path: Path) -> None:
    recording = tmp_path / "custom" / "fi" / "vm-goodbye.wav"
    _write_recording(recording, seconds=0.5)
    report = building.build(tmp_path, languages=["fi"], names=["vm-goodbye"])
    assert report.custom == ["fi/vm-goodbye"] and report.generated == []
    installed = tmp_path / "fi" / "vm-goodbye.wav"
    rate, channels, width, seconds = _format(installed)
    assert (rate, channels, width) == (8000, 1, 2) and abs(seconds - 0.5) < 0.01

    assert building.build(tmp_path, languages=["fi"], names=["vm-goodbye"]).skipped == ["fi/vm-goodbye"]
    _write_recording(recording, seconds=0.7)  # re-recorded: installed again
    building.build(tmp_path, languages=["fi"], names=["vm-goodbye"])
    assert abs(_format(installed)[3] - 0.7) < 0.01

    recording.unlink()
    assert building.build(tmp_path, languages=["fi"], names=["vm-goodbye"]).generated == ["fi/vm-goodbye"]
    assert abs(_format(installed)[3] - 0.7) > 0.05


@needs_tools
def test_unknown_name_without_recording_is_refused(tmp_path: Path) -> None:
    with pytest.raises(building.BuildError):
        building.build(tmp_path, languages=["fi"], names=["no-such-prompt"])


@needs_tools
def test_full_build_of_the_catalogue(tmp_path: Path) -> None:
    _write_recording(tmp_path / "custom" / "sv" / "act-consulting.wav")  # a tenant's own activity
    started = time.monotonic()
    report = building.build(tmp_path)
    elapsed = time.monotonic() - started
    expected = len(catalogue.names()) * len(LANGUAGES)
    assert len(report.generated) == expected and report.custom == ["sv/act-consulting"]
    for lang in LANGUAGES:
        for name in catalogue.names():
            assert _format(tmp_path / lang / f"{name}.wav")[:3] == (8000, 1, 2)
    print(f"full build: {expected} prompts in {elapsed:.1f} s")
    (tmp_path / "custom" / "sv" / "act-consulting.wav").unlink()
    again = building.build(tmp_path)
    assert again.generated == [] and again.removed == ["sv/act-consulting"]
    assert not (tmp_path / "sv" / "act-consulting.wav").exists()


# --- CLI ----------------------------------------------------------------------------------


def test_cli_say_prints_names_and_texts() -> None:
    result = CliRunner().invoke(prompts_group, ["say", "fi", "--count", "1", "3"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "vm-you-have\tSinulla on", "vm-new-1\tyksi uusi viesti", "and\tja", "num-3\tkolme", "vm-old-n\tvanhaa viestiä",
    ]
    assert CliRunner().invoke(prompts_group, ["say", "sv", "vm-goodbye"]).output == "vm-goodbye\tHej då.\n"
    assert CliRunner().invoke(prompts_group, ["say", "en", "--number", "21"]).output == "num-20\ttwenty\nnum-1\tone\n"
    assert CliRunner().invoke(prompts_group, ["say", "fi", "nope"]).exit_code != 0
    assert CliRunner().invoke(prompts_group, ["say", "fi"]).exit_code != 0


def test_cli_build_defaults_to_vipbx_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Path, tuple[str, ...]]] = []

    def fake_build(sounds: Path, *, languages: tuple[str, ...], force: bool, jobs: int | None,
                   progress: object) -> building.BuildReport:
        calls.append((sounds, tuple(languages)))
        return building.BuildReport(generated=["fi/beep"])

    monkeypatch.setattr("cli.prompts.build", fake_build)
    result = CliRunner().invoke(prompts_group, ["build"], env={"VIPBX_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert calls == [(tmp_path / "sounds", LANGUAGES)] and "1 generated" in result.output
    CliRunner().invoke(prompts_group, ["build", "--sounds", str(tmp_path / "x"), "--lang", "sv"])
    assert calls[-1] == (tmp_path / "x", ("sv",))
