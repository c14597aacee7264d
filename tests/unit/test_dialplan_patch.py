"""The dialplan change made live through AMI: which changes it takes, the steps it sends, and how
a deploy uses it (and falls back to the reload)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from asterisk_conf import deploy
from asterisk_conf.dialplan_patch import DialplanNotLive, DialplanPatch, plan, stamp
from base.paths import Paths

BASE = """\
[general]
static=yes

[globals]
VIPBX_DIALPLAN=pending
VIPBX_COUNTRY=358

; tenant acme
[vipbx-t-acme]
exten => 102,1,Gosub(vipbx-call-user,s,1(acme,mikko,PJSIP/acme-mikko,1,358401110002,102))
 same => n,Hangup()
exten => 102,hint,PJSIP/acme-mikko,CustomPresence:acme+mikko
exten => 101,1,Gosub(vipbx-call-user,s,1(acme,anna,PJSIP/acme-anna,1,358401110001,101))
 same => n,Hangup()
exten => 101,hint,PJSIP/acme-anna,CustomPresence:acme+anna
exten => _0[1-9]X.,1,Goto(+358${EXTEN:1},1)
include => vipbx-public

[vipbx-call-user]
exten => s,1,Return()

[vipbx-public]
exten => +358401110001,1,Gosub(vipbx-call-user,s,1(acme,anna,PJSIP/acme-anna,1,358401110001,101))
 same => n,Hangup()
"""

PEKKA = """\
exten => 104,1,Gosub(vipbx-call-user,s,1(acme,pekka,PJSIP/acme-pekka,1,358401110004,104))
 same => n,Hangup()
exten => 104,hint,PJSIP/acme-pekka,CustomPresence:acme+pekka
"""


def with_pekka(text: str) -> str:
    return text.replace("exten => 102,1,", PEKKA + "exten => 102,1,", 1)


def fingerprint(text: str) -> str:
    return next(line.split("=", 1)[1] for line in stamp(text).split("\n") if line.startswith("VIPBX_DIALPLAN="))


def steps_of(old: str, new: str) -> tuple:  # type: ignore[type-arg]
    """The patch's steps without its last, which sets the new fingerprint."""
    patch = plan(stamp(old), stamp(new))
    assert patch is not None and patch.steps[-1] == ("Setvar", {"Variable": "VIPBX_DIALPLAN", "Value": fingerprint(new)})
    assert patch.expected == fingerprint(old)
    return patch.steps[:-1]


def test_a_new_user_is_three_adds_in_file_order() -> None:
    patch = plan(stamp(BASE), stamp(with_pekka(BASE)))
    assert patch is not None and patch.extensions == 1
    where = {"Context": "vipbx-t-acme", "Extension": "104"}
    assert steps_of(BASE, with_pekka(BASE)) == (
        ("DialplanExtensionAdd", {**where, "Priority": "1", "Application": "Gosub",
                                  "ApplicationData": "vipbx-call-user,s,1(acme,pekka,PJSIP/acme-pekka,1,358401110004,104)"}),
        ("DialplanExtensionAdd", {**where, "Priority": "2", "Application": "Hangup", "ApplicationData": ""}),
        # A hint's whole text is its "application", as pbx_config stores it.
        ("DialplanExtensionAdd", {**where, "Priority": "hint",
                                  "Application": "PJSIP/acme-pekka,CustomPresence:acme+pekka", "ApplicationData": ""}),
    )


def test_a_removed_user_is_one_remove_of_each_extension() -> None:
    assert steps_of(with_pekka(BASE), BASE) == (
        ("DialplanExtensionRemove", {"Context": "vipbx-t-acme", "Extension": "104"}),)


def test_a_changed_user_is_replaced_in_place_priority_by_priority() -> None:
    new = BASE.replace("PJSIP/acme-anna,1,358401110001,101))\n same => n,Hangup()\nexten => 101,hint,PJSIP/acme-anna,",
                       "PJSIP/acme-anna&PJSIP/acme-desk,1,358401110001,101))\n same => n,Hangup()\n"
                       "exten => 101,hint,PJSIP/acme-anna&PJSIP/acme-desk,")
    steps = steps_of(BASE, new)
    assert [(a, f["Priority"], f.get("Replace")) for a, f in steps] == [
        ("DialplanExtensionAdd", "1", "yes"), ("DialplanExtensionAdd", "hint", "yes")]
    assert steps[1][1]["Application"] == "PJSIP/acme-anna&PJSIP/acme-desk,CustomPresence:acme+anna"


def test_an_extension_that_loses_a_priority_is_put_back_whole() -> None:
    new = BASE.replace(" same => n,Hangup()\nexten => 101,hint", "exten => 101,hint", 1)
    assert [(a, f.get("Priority")) for a, f in steps_of(BASE, new)] == [
        ("DialplanExtensionRemove", None), ("DialplanExtensionAdd", "1"), ("DialplanExtensionAdd", "hint")]


def test_order_and_comments_do_not_count_as_changes() -> None:
    mikko, anna = (BASE.split("exten => 102,1,")[1].split("exten => 101,1,")[0],
                   BASE.split("exten => 101,1,")[1].split("exten => _0")[0])
    reordered = BASE.replace(f"exten => 102,1,{mikko}exten => 101,1,{anna}",
                             f"exten => 101,1,{anna}exten => 102,1,{mikko}").replace("; tenant acme", "; other words")
    assert reordered != BASE
    assert steps_of(BASE, reordered) == ()


@pytest.mark.parametrize("new", [
    BASE + "\n[vipbx-t-borealis]\nexten => 101,1,Hangup()\n",  # a context added
    BASE.replace("include => vipbx-public", "include => vipbx-outbound"),  # an include changed
    BASE.replace("VIPBX_COUNTRY=358", "VIPBX_COUNTRY=46"),  # a global changed
    BASE.replace(" same => n,Hangup()\nexten => 101,hint", " same => n(end),Hangup()\nexten => 101,hint"),  # a label
    with_pekka(BASE).replace("exten => 104,1,", "exten => 104/100,1,"),  # a caller-id match
    with_pekka(BASE).replace("acme+pekka", "acme+pekka;x"),  # a comment inside the line
    with_pekka(BASE).replace("(acme,pekka,", '(acme,"pekka",'),  # quotes pbx_config reads its own way
    with_pekka(BASE).replace(" same => n,Hangup()\nexten => 104,hint", " same => n,Hangup()\n same => 2,NoOp()\nexten => 104,hint"),
    "exten => 101,1,Hangup()\n" + BASE,  # an extension outside any context
])
def test_changes_beyond_extensions_are_left_to_the_reload(new: str) -> None:
    assert plan(stamp(BASE), stamp(new)) is None


def test_a_dialplan_without_its_fingerprint_is_left_to_the_reload() -> None:
    assert plan(BASE, stamp(with_pekka(BASE))) is None  # "pending": not a rendered file
    assert plan(stamp(BASE), stamp(with_pekka(BASE)).replace("VIPBX_DIALPLAN=", "; was ")) is None


def test_more_extensions_than_the_limit_are_left_to_the_reload() -> None:
    assert plan(stamp(BASE), stamp(with_pekka(BASE)), limit=0) is None
    assert plan(stamp(BASE), stamp(with_pekka(BASE)), limit=1) is not None


# --- in a deploy ---------------------------------------------------------------------------

FILES = {"extensions.conf": stamp(BASE), "voicemail.conf": "[acme]\n101 => 1234,Anna\n"}
PEKKA_FILES = {**FILES, "extensions.conf": stamp(with_pekka(BASE))}


class Recorder:
    def __init__(self, refuse: bool = False, running: str | None = None) -> None:
        self.reloads: list[list[str]] = []
        self.patches: list[DialplanPatch] = []
        self.refuse = refuse
        self.running = running  # the dialplan Asterisk runs, when not the one planned from

    async def reload(self, targets: list[str]) -> None:
        self.reloads.append(targets)

    async def patch(self, change: DialplanPatch) -> None:
        if self.running is not None and self.running != change.expected:
            raise DialplanNotLive(f"runs {self.running}")
        self.patches.append(change)
        if self.refuse:
            raise RuntimeError("That extension and priority already exist at that context")


def deployed(tmp_path: Path, files: dict[str, str], asterisk: Recorder) -> deploy.DeployResult:
    return asyncio.run(deploy.deploy(Paths(tmp_path), files, asterisk.reload, patch_dialplan=asterisk.patch))


def test_a_new_user_goes_in_live_and_only_the_other_modules_reload(tmp_path: Path) -> None:
    deployed(tmp_path, FILES, Recorder())
    asterisk = Recorder()
    result = deployed(tmp_path, {**PEKKA_FILES, "voicemail.conf": FILES["voicemail.conf"] + "104 => 5,P\n"}, asterisk)
    assert result.patched == 1 and len(asterisk.patches) == 1
    assert asterisk.reloads == [["app_voicemail.so"]] and result.reloaded == ["app_voicemail.so"]
    assert deploy.patched_generation(Paths(tmp_path)) == result.generation


def test_a_change_beyond_extensions_reloads_and_clears_the_mark(tmp_path: Path) -> None:
    deployed(tmp_path, FILES, Recorder())
    deployed(tmp_path, PEKKA_FILES, Recorder())
    asterisk = Recorder()
    result = deployed(tmp_path, {**FILES, "extensions.conf": stamp(BASE.replace("=358", "=46"))}, asterisk)
    assert result.patched == 0 and asterisk.patches == []
    assert asterisk.reloads == [["pbx_config.so"]]
    assert deploy.patched_generation(Paths(tmp_path)) is None


def test_a_refused_patch_restores_the_old_files_by_reloading_them(tmp_path: Path) -> None:
    deployed(tmp_path, FILES, Recorder())
    asterisk = Recorder(refuse=True)
    with pytest.raises(deploy.DeployError, match="previous one restored"):
        deployed(tmp_path, PEKKA_FILES, asterisk)
    # The reload of the old file undoes whatever part of the patch went in.
    assert asterisk.reloads == [["pbx_config.so"]]
    assert deploy.Generations(Paths(tmp_path)).live() == FILES


def test_rollback_takes_the_user_out_live_too(tmp_path: Path) -> None:
    deployed(tmp_path, FILES, Recorder())
    deployed(tmp_path, PEKKA_FILES, Recorder())
    asterisk = Recorder()
    result = asyncio.run(deploy.rollback(Paths(tmp_path), asterisk.reload, patch_dialplan=asterisk.patch))
    assert result.patched == 1 and asterisk.reloads == []
    assert asterisk.patches[0].steps[0] == ("DialplanExtensionRemove", {"Context": "vipbx-t-acme", "Extension": "104"})
    assert deploy.patched_generation(Paths(tmp_path)) == result.generation


def test_without_a_patcher_the_dialplan_is_reloaded_as_before(tmp_path: Path) -> None:
    deployed(tmp_path, FILES, Recorder())
    asterisk = Recorder()
    result = asyncio.run(deploy.deploy(Paths(tmp_path), PEKKA_FILES, asterisk.reload))
    assert result.patched == 0 and asterisk.reloads == [["pbx_config.so"]]


def test_asterisk_running_another_dialplan_gets_the_file_reloaded(tmp_path: Path) -> None:
    """After a `deploy --no-reload`, Asterisk runs an older dialplan than the live file: a patch
    planned from the live file would be wrong there, so the file is reloaded whole."""
    deployed(tmp_path, FILES, Recorder())
    asterisk = Recorder(running=fingerprint("[globals]\nVIPBX_DIALPLAN=pending\n[older]\n"))
    result = deployed(tmp_path, PEKKA_FILES, asterisk)
    assert result.patched == 0 and asterisk.patches == [] and asterisk.reloads == [["pbx_config.so"]]
    assert deploy.patched_generation(Paths(tmp_path)) is None


def test_reading_only_the_contexts_that_differ_plans_what_reading_everything_plans(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rendered platform's dialplan with a user added, changed and removed: the steps from the
    contexts that differ are those of reading both files whole."""
    from asterisk_conf import dialplan_patch
    from asterisk_conf.render import render_config
    from asterisk_conf.validate import load_config
    from base.secrets import SecretStore

    examples = Path(__file__).resolve().parents[2] / "examples"
    acme = (examples / "acme.yaml").read_text(encoding="utf-8")
    user = ('      - {id: pekka.nieminen, name: Pekka Nieminen, number: "+358401110004", extension: "104", '
            'pin: "602817", language: fi, devices: [{id: acme-pekka-soft}]}\n')
    secrets = SecretStore(tmp_path / "secrets.json")

    def dialplan(text: str) -> str:
        (tmp_path / "acme.yaml").write_text(text, encoding="utf-8")
        files = [str(examples / "platform.yaml"), str(tmp_path / "acme.yaml"), str(examples / "borealis.yaml")]
        return render_config(load_config(files), secrets)["extensions.conf"]

    versions = [dialplan(acme), dialplan(acme + user), dialplan(acme.replace("Anna Virtanen", "Anna Korhonen"))]
    cut = [plan(a, b) for a in versions for b in versions if a != b]
    monkeypatch.setattr(dialplan_patch, "_read_both", lambda old, new: (dialplan_patch._read(old),
                                                                        dialplan_patch._read(new)))
    whole = [plan(a, b) for a in versions for b in versions if a != b]
    assert cut == whole and all(p is not None and p.extensions for p in cut)
