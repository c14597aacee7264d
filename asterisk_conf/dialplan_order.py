"""extensions.conf with each context's extensions in descending order.

Asterisk keeps a context's extensions in a sorted list and walks it from its start for every
extension it adds: extensions written in ascending order cost it quadratic time to load (110 s for
the pbx_config reload at 40,000 users), descending order linear time (0.44 s; bench/README.md).
The dialplan Asterisk ends up with is the same: it orders extensions itself, and an extension's
priorities (`same =>`) stay with it. Patterns, which Asterisk sorts after plain extensions, come
first. Comments travel with the extension they precede; includes keep their order, after the
extensions.
"""

from __future__ import annotations

import re

_EXTEN = re.compile(r"exten => ([^,]+),")
_DIRECTIVES = ("include =>", "switch =>", "ignorepat =>")


def descending(text: str) -> str:
    out: list[str] = []
    blocks: list[tuple[str, list[str]]] = []  # (extension, its lines)
    directives: list[str] = []
    pending: list[str] = []  # comments and blank lines not yet attached to an extension

    def end_context() -> None:
        # Stable: an extension's several `exten =>` lines (e.g. its hint) keep their order.
        blocks.sort(key=lambda block: (block[0].startswith("_"), block[0]), reverse=True)
        for _, lines in blocks:
            out.extend(lines)
        out.extend(directives)
        out.extend(pending)
        blocks.clear()
        directives.clear()
        pending.clear()

    for line in text.split("\n"):
        exten = _EXTEN.match(line)
        if line.startswith("["):
            end_context()
            out.append(line)
        elif exten:
            blocks.append((exten.group(1), [*pending, line]))
            pending.clear()
        elif line.startswith(" same =>") and blocks:
            blocks[-1][1].extend(pending)
            blocks[-1][1].append(line)
            pending.clear()
        elif line.startswith(_DIRECTIVES):
            directives.append(line)
        elif blocks or directives:
            pending.append(line)
        else:
            out.append(line)  # a context's head (comments before its first extension)
    end_context()
    return "\n".join(out)
