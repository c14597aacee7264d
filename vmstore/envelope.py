"""The `msgNNNN.txt` envelope, byte for byte as app_voicemail (Asterisk 22) writes it.

app_voicemail reads the file back with Asterisk's config parser, so values are escaped for that
parser: `;` starts a comment unless written `\\;`, and a line break would end the value. Whatever
a caller sends as a name, every value is written on its one line: control characters and every
Unicode line or paragraph separator become a space, and values are cut to what app_voicemail keeps.
Asterisk 22 no longer writes `macrocontext=`; a file that has it (older Asterisk) still reads.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# C0 and C1 controls (NUL, \n, \r, \v, \f, \x85, ...) and U+2028/U+2029: a reader that splits
# lines on any of them (Python's str.splitlines does) would see the value end there.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# What a caller number may hold inside `<...>`: anything else could break the callerid syntax.
_SPACES = re.compile(" {2,}")
_BLANKS = " \t\r\n\v\f"  # what Asterisk's ast_strip trims (ASCII only)
_NUMBER_JUNK = re.compile(r"[^0-9A-Za-z+*#._@-]")
_NAME_MAX = 127  # bytes: app_voicemail quotes the name into a 128-byte buffer
_NUMBER_MAX = 80  # AST_MAX_EXTENSION
_VALUE_MAX = 1024  # bytes; Asterisk's config reader takes lines far longer, no value needs more

# app_voicemail's counter starts at 0 in every process; ours starts at random so that processes
# writing the same spool in the same second do not count alike.
_counter = itertools.count(secrets.randbits(32))


def new_msg_id() -> str:
    """`epoch-counter-random`: app_voicemail's `%ld-%08x` plus 16 random bits, unique across
    processes; 24 characters, so `voicemail show mailbox` shows it whole."""
    return f"{int(time.time())}-{next(_counter) & 0xFFFFFFFF:08x}-{secrets.randbits(16):04x}"


@dataclass(frozen=True)
class Envelope:
    caller_number: str | None
    caller_name: str | None
    called_number: str  # the diverted / originally called number (app_voicemail's `rdnis`)
    orig_time: datetime  # aware
    duration: int  # seconds
    msg_id: str
    caller_channel: str = ""
    context: str = ""  # dialplan context of the call (not the voicemail context)
    exten: str = ""
    priority: int = 1
    category: str = ""
    flag: str = ""  # "" or "Urgent"
    origmailbox: str = ""  # the mailbox first left in; `VoicemailStore.add` fills it in

    def to_text(self) -> str:
        when = self.orig_time.astimezone(UTC)
        fields = (
            ("origmailbox", self.origmailbox),
            ("context", self.context),
            ("exten", self.exten),
            ("rdnis", self.called_number or "unknown"),
            ("priority", str(self.priority)),
            ("callerchan", self.caller_channel),
            ("callerid", callerid_merge(self.caller_name, self.caller_number)),
            ("origdate", origdate(when)),
            ("origtime", str(int(when.timestamp()))),
            ("category", self.category),
            ("msg_id", self.msg_id),
            ("flag", self.flag),
            ("duration", str(int(self.duration))),
        )
        body = "".join(f"{key}={_conf_value(value)}\n" for key, value in fields)
        return ";\n; Message Information file\n;\n[message]\n" + body

    @classmethod
    def from_text(cls, text: str, *, fallback_time: datetime | None = None) -> Envelope:
        """Parse an envelope; never raises, so a damaged file still lists (and can be deleted)."""
        values = parse_conf(text).get("message", {})
        name, number = callerid_parse(values.get("callerid", ""))
        try:
            when = datetime.fromtimestamp(int(values.get("origtime", "")), UTC)
        except (ValueError, OverflowError, OSError):
            when = fallback_time or datetime.fromtimestamp(0, UTC)
        rdnis = values.get("rdnis", "")
        mailbox = values.get("origmailbox", "")
        if rdnis.lower() in ("", "unknown"):
            # app_voicemail writes "unknown" when the call was not redirected: the mailbox's number.
            rdnis = "+" + mailbox if mailbox.isdigit() else mailbox
        return cls(
            caller_number=number,
            caller_name=name,
            called_number=rdnis,
            orig_time=when,
            duration=_int(values.get("duration"), 0),
            msg_id=values.get("msg_id", ""),
            caller_channel=values.get("callerchan", ""),
            context=values.get("context", ""),
            exten=values.get("exten", ""),
            priority=_int(values.get("priority"), 1),
            category=values.get("category", ""),
            flag=values.get("flag", ""),
            origmailbox=mailbox,
        )


def origdate(when: datetime) -> str:
    """`%a %b %e %r UTC %Y` in the C locale, e.g. `Tue Mar  5 02:03:04 PM UTC 2024`."""
    t = when.astimezone(UTC)
    hour12 = t.hour % 12 or 12
    ampm = "AM" if t.hour < 12 else "PM"
    return (f"{_DAYS[t.weekday()]} {_MONTHS[t.month - 1]} {t.day:2d} "
            f"{hour12:02d}:{t.minute:02d}:{t.second:02d} {ampm} UTC {t.year}")


def callerid_merge(name: str | None, number: str | None) -> str:
    """Asterisk's `ast_callerid_merge(..., "Unknown")`: `"Name" <number>`, either alone, or Unknown."""
    number = _NUMBER_JUNK.sub("", number or "")[:_NUMBER_MAX] or None
    name = _SPACES.sub(" ", _one_line(name or "")) or None
    if name and number:
        return f'"{_quoted(name, _NAME_MAX)}" <{number}>'
    if name:
        # Alone it is not quoted: a `<...>` in it would read back as the caller's number.
        return _cut(name.replace("<", "").replace(">", ""), _NAME_MAX).strip(_BLANKS) or "Unknown"
    return number or "Unknown"


def _quoted(name: str, limit: int) -> str:
    """`ast_escape_quoted` into `limit` UTF-8 bytes, never cutting a character or an escape."""
    out: list[str] = []
    size = 0
    for char in name:
        piece = "\\" + char if char in '\\"' else char
        size += len(piece.encode("utf-8"))
        if size > limit:
            break
        out.append(piece)
    return "".join(out)


def _one_line(value: str) -> str:
    """Control characters and line separators → a space; blanks around trimmed."""
    return _CONTROL.sub(" ", value).strip(_BLANKS)


def _cut(value: str, limit: int) -> str:
    """At most `limit` UTF-8 bytes, cut between characters."""
    return value.encode("utf-8")[:limit].decode("utf-8", "ignore")


def callerid_parse(value: str) -> tuple[str | None, str | None]:
    """Asterisk's `ast_callerid_parse` for what app_voicemail writes → (name, number)."""
    value = value.strip()
    if not value or value == "Unknown":
        return None, None
    left = value.rfind("<")
    if left >= 0:
        right = value.find(">", left)
        number = value[left + 1:right if right >= 0 else None].strip() or None
        name = value[:left].strip()
    elif re.fullmatch(r"[0-9+*#() .-]+", value):
        return None, value
    else:
        number, name = None, value
    if len(name) >= 2 and name[0] == '"' and name[-1] == '"':
        name = re.sub(r"\\(.)", r"\1", name[1:-1])  # ast_unescape_quoted
    return name or None, number


def parse_conf(text: str) -> dict[str, dict[str, str]]:
    """Enough of Asterisk's config parser for envelopes: sections, `key=value`, `;` comments
    with `\\;` escapes, surrounding blanks trimmed."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    # Asterisk's reader ends a line at "\n" only: U+2028 or \x85 inside a value (an envelope of
    # an older version) is part of it, as it is for app_voicemail.
    for raw in text.split("\n"):
        line = _strip_comment(raw).strip(_BLANKS)
        if not line:
            continue
        if line.startswith("[") and "]" in line:
            current = sections.setdefault(line[1:line.index("]")], {})
        elif current is not None and "=" in line:
            key, _, value = line.partition("=")
            current[key.strip(_BLANKS)] = value.removeprefix(">").strip(_BLANKS)  # `=>` is `=` too
    return sections


def _strip_comment(line: str) -> str:
    out: list[str] = []
    for char in line:
        if char == ";":
            if out and out[-1] == "\\":
                out[-1] = ";"
                continue
            break
        out.append(char)
    return "".join(out)


def _conf_value(value: str) -> str:
    value = _cut(_one_line(value), _VALUE_MAX).replace(";", "\\;")
    # `key=>value` is Asterisk syntax for `key=value`: a leading '>' would be eaten.
    return " " + value if value.startswith(">") else value


def _int(value: str | None, default: int) -> int:
    try:
        return int(value or "")
    except ValueError:
        return default
