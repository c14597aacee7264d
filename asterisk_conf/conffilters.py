"""Jinja filters that put values into Asterisk configuration inertly.

The validator already refuses anything outside strict allow-lists; these filters are the second
lock on the door: a value that could change the meaning of a line (start a comment, a section, an
include, a variable expansion, a new argument) stops the render instead of reaching Asterisk.
"""

from __future__ import annotations

import ipaddress
import re

# Characters with a meaning somewhere in Asterisk's config or dialplan syntax.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f;\[\]\\$"{},=<>|#]')
_EXTEN = re.compile(r"^[0-9*#+]+$")


class UnsafeValueError(ValueError):
    """A value reached a template that could alter the generated configuration."""


def conf(value: object) -> str:
    """Any value in a key=value line, a section name or an application argument."""
    text = str(value)
    match = _UNSAFE.search(text)
    if match or text != text.strip():
        raise UnsafeValueError(f"refusing to render {text!r}: unsafe character {match.group()!r}" if match else f"refusing to render {text!r}: leading/trailing space")
    return text


def exten(value: object) -> str:
    """A literal dialplan extension: digits and the GSM code characters * # +."""
    text = str(value)
    if not _EXTEN.match(text):
        raise UnsafeValueError(f"refusing to render extension {text!r}")
    return text


def hostport(host: str, port: int) -> str:
    """`host:port`, with IPv6 literals bracketed as Asterisk expects."""
    host = conf(host)
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{int(port)}"
    except ValueError:
        pass  # a DNS name
    return f"{host}:{int(port)}"


FILTERS = {"conf": conf, "exten": exten}
GLOBALS = {"hostport": hostport}
