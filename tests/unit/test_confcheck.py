"""The pre-deploy check catches what would make Asterisk half-load a file."""

from asterisk_conf import confcheck

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
