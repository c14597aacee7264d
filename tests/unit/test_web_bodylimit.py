"""The cap on request bodies: announced or streamed, a body past it is refused with 413 before a
route reads it, and a body within it reaches the route whole."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from webharness import make_harness

from web.bodylimit import MAX_BODY_BYTES

ANNA = ("acme", "anna.virtanen")


async def test_an_announced_large_body_is_refused(tmp_path: Path) -> None:
    site = make_harness(tmp_path)
    async with site.client() as c:
        r = await c.post("/login", content=b"username=" + b"x" * MAX_BODY_BYTES,
                         headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 413
        r = await c.post("/api/v1/session", content=b"{}", headers={"content-length": "not a number",
                                                                    "content-type": "application/json"})
        assert r.status_code == 413


@pytest.mark.parametrize("chunks", [1, 40])
async def test_a_streamed_body_past_the_cap_is_refused(tmp_path: Path, chunks: int) -> None:
    site = make_harness(tmp_path)

    async def body() -> AsyncIterator[bytes]:  # no content-length: chunked
        for _ in range(chunks):
            yield b"a" * (2 * MAX_BODY_BYTES // chunks + 1)

    async with site.client() as c:
        csrf = await site.login(c, site.who(*ANNA))
        r = await c.put("/api/v1/presence", content=body(), headers={"x-csrf-token": csrf,
                                                                     "content-type": "application/json"})
        assert r.status_code == 413


async def test_a_body_within_the_cap_reaches_the_route(tmp_path: Path) -> None:
    site = make_harness(tmp_path)
    async with site.client() as c:
        csrf = await site.login(c, site.who(*ANNA))
        note = "n" * 100
        r = await c.put("/api/v1/presence", json={"activity": "meeting", "note": note}, headers={"x-csrf-token": csrf})
        assert r.status_code == 200, r.text
    assert site.state.presence(*ANNA).note == note
