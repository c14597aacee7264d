"""Whatever a caller sends as a name (or a channel as any field), the envelope stays one value per
line and reads back with its msg_id: the reader is the same line logic as Asterisk's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmstore.envelope import Envelope, parse_conf

# Every way to end a line that some reader knows, and the characters the format gives a meaning.
SEPARATORS = ["\n", "\r", "\r\n", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\x00"]
SPECIAL = ["=", ";", ";--", "\\", '"', "<", ">", "[", "]", "#include x", "=>", " "]
WHEN = datetime(2026, 3, 5, 14, 3, 4, tzinfo=UTC)

names = st.lists(st.one_of(st.sampled_from(SEPARATORS + SPECIAL), st.text(max_size=20)), max_size=30).map("".join)


def envelope(name: str | None, number: str | None = "+358501234567", **fields: str) -> Envelope:
    return Envelope(caller_number=number, caller_name=name, called_number="+358401110002",
                    orig_time=WHEN, duration=7, msg_id="1772719384-0000002a-beef", **fields)


def lines_of(text: str) -> list[str]:
    return text.split("\n")


@pytest.mark.parametrize("name", ["Anna\u2028[message]\u2028msg_id=", "x\x85y", "a\u2029b", "a\rmsg_id=evil",
                                  "NUL\x00here", "vt\vff\f"])
def test_a_name_with_a_line_separator_keeps_the_envelope_whole(name: str) -> None:
    text = envelope(name).to_text()
    read = Envelope.from_text(text)
    assert read.msg_id == "1772719384-0000002a-beef"
    assert read.caller_number == "+358501234567"
    assert read.duration == 7
    # Every line, as any reader splits them, is a comment, the section or one key.
    assert len(text.splitlines()) == len(lines_of(text)) - 1 == 17


def test_an_envelope_written_with_a_separator_by_an_older_version_still_reads() -> None:
    old = (";\n; Message Information file\n;\n[message]\ncallerid=\"Anna\u2028[x]\" <+358501234567>\n"
           "msg_id=1772719384-0000002a-beef\nduration=7\n")
    read = Envelope.from_text(old)
    assert read.msg_id == "1772719384-0000002a-beef"
    assert read.caller_name == "Anna\u2028[x]"


def test_a_very_long_name_is_cut_to_what_app_voicemail_keeps() -> None:
    read = Envelope.from_text(envelope("ä" * 500 + "\\").to_text())
    assert read.caller_name == "ä" * 63  # 126 bytes: a 2-byte character is never split
    escapes = Envelope.from_text(envelope('"' * 100).to_text())
    assert escapes.caller_name == '"' * 63  # `\"` pairs are never split either
    assert Envelope.from_text(envelope("n", number="1" * 500).to_text()).caller_number == "1" * 80


@settings(max_examples=400, deadline=None)
@given(name=names, number=st.one_of(st.none(), st.text(max_size=40)), chan=names, context=names)
def test_any_name_round_trips_to_a_parseable_envelope(name: str, number: str | None, chan: str,
                                                      context: str) -> None:
    text = envelope(name, number, caller_channel=chan, context=context).to_text()
    assert len(text.splitlines()) == len(lines_of(text)) - 1 == 17
    values = parse_conf(text)["message"]
    assert len(values) == 13  # no field lost, none invented
    read = Envelope.from_text(text)
    assert read.msg_id == "1772719384-0000002a-beef"
    assert (read.duration, read.orig_time, read.called_number) == (7, WHEN, "+358401110002")
    for line in lines_of(text):
        assert len(line.encode("utf-8")) <= 1100
    if read.caller_name is not None:
        assert len(read.caller_name.encode("utf-8")) <= 127


@settings(max_examples=200, deadline=None)
@given(name=st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Zs")),
                    min_size=1, max_size=40))
def test_a_printable_name_reads_back_as_it_was(name: str) -> None:
    read = Envelope.from_text(envelope(name).to_text())
    assert (read.caller_name, read.caller_number) == (name, "+358501234567")
