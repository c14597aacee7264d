"""A rendered Asterisk file cut at its section heads ("\n["), for the readers that look only at
the sections that differ from the live file (confcheck, dialplan_patch, pjsip_patch): a node's
files have 200,000 sections, a user's change touches a handful."""

from __future__ import annotations

import re

# A section head after blanks: Asterisk reads it, the cut at "\n[" would miss it.
_INDENTED_HEAD = re.compile(r"\n[ \t]+\[")


def has_indented_head(text: str) -> bool:
    return _INDENTED_HEAD.search(text) is not None


def cut_sections(text: str) -> list[str] | None:
    """The text before the first section head, then each section's text after its "\n[" (its
    name and "]" first); None for a file with a head the cut would miss."""
    if has_indented_head(text):
        return None
    return ("\n" + text).split("\n[")
