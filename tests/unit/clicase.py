"""Reading what a `vipbx` command printed in a test."""

from __future__ import annotations

from click.testing import Result


def shown(result: Result) -> dict[str, str]:
    """The `label: value` lines after the heading of a listing (exit status 0 required)."""
    assert result.exit_code == 0, result.output
    out = {}
    for line in result.stdout.splitlines()[1:]:
        label, _, value = line.partition(":")
        out[label.strip()] = value.strip()
    return out
