"""The pre-deploy check catches what would make Asterisk half-load a file."""

from pathlib import Path

import pytest

from asterisk_conf import confcheck
from asterisk_conf.render import render_config
from asterisk_conf.validate import load_config
from base.secrets import SecretStore

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

GOOD_PJSIP = """
[vipbx-udp]
type=transport
[dev1]
type=endpoint
context=vipbx-t-a
auth=dev1
aors=dev1
transport=vipbx-udp
[dev1]
type=auth
[dev1]
type=aor
"""
GOOD_EXT = """
[vipbx-t-a]
exten => 101,1,Goto(vipbx-other,s,1)
include => vipbx-other
[vipbx-other]
exten => s,1,Hangup()
"""


def test_good_files_pass() -> None:
    assert confcheck.check({"pjsip.conf": GOOD_PJSIP, "extensions.conf": GOOD_EXT}) == []


def test_directives_and_garbage_lines_are_reported_with_line_numbers() -> None:
    errors = confcheck.check({"x.conf": "[a]\n#include /etc/passwd\nthis is not config\nkey=value ; comment"})
    assert any("x.conf:2" in e and "#include" in e for e in errors)
    assert any("x.conf:3" in e for e in errors)
    assert any("x.conf:4" in e and "';'" in e for e in errors)


def test_missing_references_are_reported() -> None:
    pjsip = GOOD_PJSIP.replace("aors=dev1", "aors=dev2")
    ext = GOOD_EXT.replace("include => vipbx-other", "include => vipbx-missing")
    errors = confcheck.check({"pjsip.conf": pjsip, "extensions.conf": ext})
    assert any("missing aor [dev2]" in e for e in errors)
    assert any("missing context [vipbx-missing]" in e for e in errors)
    errors = confcheck.check({"pjsip.conf": GOOD_PJSIP, "extensions.conf": "[vipbx-other]\nexten => s,1,Hangup()"})
    assert any("uses missing context [vipbx-t-a]" in e for e in errors)


# --- a change checked against the live files -----------------------------------------------------

def rendered(tmp_path: Path, extra: str = "") -> dict[str, str]:
    acme = (EXAMPLES / "acme.yaml").read_text(encoding="utf-8") + extra
    (tmp_path / "acme.yaml").write_text(acme, encoding="utf-8")
    files = [str(EXAMPLES / "platform.yaml"), str(tmp_path / "acme.yaml"), str(EXAMPLES / "borealis.yaml")]
    return render_config(load_config(files), SecretStore(tmp_path / "secrets.json"))


PEKKA = ('      - {id: pekka.nieminen, name: Pekka Nieminen, number: "+358401110004", extension: "104", '
         'pin: "602817", language: fi, devices: [{id: acme-pekka-soft}]}\n')


class WholeChecks:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runs = 0
        real = confcheck._check

        def counted(files: dict[str, str]) -> list[str]:
            self.runs += 1
            return real(files)

        monkeypatch.setattr(confcheck, "_check", counted)


def test_a_new_user_is_checked_by_its_sections_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    live, new = rendered(tmp_path), rendered(tmp_path, PEKKA)
    whole = WholeChecks(monkeypatch)
    assert confcheck.check(new, live) == [] and whole.runs == 0
    # Removed again: his sections are gone, and their names are nowhere else.
    assert confcheck.check(live, new) == [] and whole.runs == 0
    # A section gone whose name is still used: checked whole (and refused).
    named = {**new, "pjsip.conf": new["pjsip.conf"].replace("\n[acme-pekka-soft]\ntype=auth\n", "\n[x]\ntype=auth\n")}
    assert confcheck.check(named, live) == confcheck.check(named) != [] and whole.runs == 2


def mutations(files: dict[str, str]) -> list[dict[str, str]]:
    """Changes of a good set that the whole check refuses."""
    pjsip, dialplan = files["pjsip.conf"], files["extensions.conf"]
    return [
        {**files, "pjsip.conf": pjsip.replace("auth=acme-anna-soft", "auth=acme-nobody", 1)},
        {**files, "pjsip.conf": pjsip.replace("aors=acme-anna-soft", "aors=acme-nobody", 1)},
        {**files, "pjsip.conf": pjsip.replace("context=vipbx-t-acme", "context=vipbx-t-nowhere", 1)},
        {**files, "pjsip.conf": pjsip.replace("\n[acme-anna-soft]\ntype=auth\n", "\n[acme-anna-soft]\ntype=aor\n", 1)},
        {**files, "pjsip.conf": pjsip + "\n[acme-anna-soft]\ntype=auth\nusername=x\n"},  # twice
        {**files, "pjsip.conf": pjsip + "\n[acme-new]\ntype=endpoint\nthis is no setting\n"},
        {**files, "pjsip.conf": pjsip + "\n[acme-new]\ntype=endpoint\ncallerid=a;b\n"},
        {**files, "pjsip.conf": pjsip + "\n#include evil.conf\n"},
        {**files, "pjsip.conf": pjsip + "\r[acme-new]\ntype=identify\nendpoint=nobody\n"},
        {**files, "pjsip.conf": pjsip + "\n  [acme-new]\ntype=identify\nendpoint=nobody\n"},
        {**files, "pjsip.conf": pjsip + "\n[acme-id]\ntype=identify\nendpoint=nobody\n"},
        {**files, "extensions.conf": dialplan + "\n[vipbx-new]\nexten => 1,1,Goto(vipbx-nowhere,s,1)\n"},
        {**files, "extensions.conf": dialplan + "\n[vipbx-new]\ninclude => vipbx-nowhere\n"},
        {**files, "extensions.conf": dialplan.replace("\n[vipbx-voicemail-number]\n", "\n[vipbx-voicemail-numbr]\n", 1)},
        {**files, "manager.conf": files["manager.conf"] + "\nnot a line\n"},
        # A context gone that only the unchanged endpoints name (in pjsip.conf).
        {**files, "extensions.conf": dialplan.replace("vipbx-t-acme", "vipbx-t-akme")},
        # Lines added to a context that was there (only its new lines are read).
        {**files, "extensions.conf": dialplan.replace(
            "\n[vipbx-voicemail-number]\n", "\n[vipbx-voicemail-number]\nexten => 9,1,Goto(vipbx-nowhere,s,1)\n", 1)},
        {**files, "extensions.conf": dialplan.replace(
            "\n[vipbx-voicemail-number]\n", "\n[vipbx-voicemail-number]\nexten 9 Goto\n", 1)},
        {**files, "extensions.conf": dialplan.replace(
            "\n[vipbx-voicemail-number]\n", "\n[vipbx-voicemail-number]\nexten => 9,1,NoOp(a;b)\n", 1)},
    ]


def test_a_change_with_a_problem_gets_exactly_the_problems_of_the_whole_check(tmp_path: Path) -> None:
    live = rendered(tmp_path)
    gone = mutations(live)[-4]["extensions.conf"]
    assert "vipbx-t-acme" not in gone and "context=vipbx-t-acme\n" in live["pjsip.conf"]
    for number, bad in enumerate(mutations(live)):
        whole = confcheck.check(bad)
        assert whole, number  # each mutation is a problem the whole check finds
        assert confcheck.check(bad, live) == whole, number
