"""extensions.conf written with each context's extensions in descending order (linear loading in
Asterisk), without changing a single line of the dialplan."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from asterisk_conf.dialplan_order import descending
from asterisk_conf.render import render_config
from asterisk_conf.validate import load_config
from base.secrets import SecretStore

EXAMPLES = sorted(str(p) for p in (Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))

SAMPLE = """[general]
static=yes

[ctx]
; about 101
exten => 101,1,Gosub(x)
 same => n,Hangup()
exten => 101,hint,PJSIP/a
exten => _0X.,1,Goto(+358${EXTEN:1},1)
exten => 109,1,Dial(PJSIP/b)
; inside 109's priorities
 same => n,Hangup()
include => first
exten => 103,1,Busy()
include => second

[other]
exten => s,1,Answer()
"""


def contexts(text: str) -> dict[str, Counter[str]]:
    found: dict[str, Counter[str]] = {}
    current = ""
    for line in text.split("\n"):
        if line.startswith("["):
            current = line
        found.setdefault(current, Counter())[line] += 1
    return found


def test_extensions_descend_patterns_first_priorities_and_comments_travel() -> None:
    assert descending(SAMPLE).split("\n") == [
        "[general]", "static=yes", "",
        "[ctx]", "; about 101",  # before the first extension: the context's head, stays there
        "exten => _0X.,1,Goto(+358${EXTEN:1},1)",
        "exten => 109,1,Dial(PJSIP/b)", "; inside 109's priorities", " same => n,Hangup()",
        "exten => 103,1,Busy()",
        "exten => 101,1,Gosub(x)", " same => n,Hangup()", "exten => 101,hint,PJSIP/a",
        "include => first", "include => second", "",
        "[other]", "exten => s,1,Answer()", "",
    ]


def test_the_products_dialplan_keeps_every_line_in_its_context(tmp_path: Path) -> None:
    files = render_config(load_config(EXAMPLES), SecretStore(tmp_path / "secrets.json"))
    text = files["extensions.conf"]
    assert descending(text) == text  # the renderer already wrote it so: idempotent
    for name, lines in contexts(text).items():
        plain = [line.split(",")[0] for line in lines if line.startswith("exten => ") and " => _" not in line]
        assert plain == sorted(plain, reverse=True) or len(set(plain)) <= 1, name


def test_the_same_lines_as_without_sorting() -> None:
    shuffled = SAMPLE.replace("exten => 103,1,Busy()\n", "").replace("[other]", "exten => 103,1,Busy()\n[other]")
    assert contexts(descending(shuffled)) == contexts(shuffled)
