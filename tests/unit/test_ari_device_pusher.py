"""The ARI side of new devices made live (cli.reload.AriDevicePusher), against a fake ARI: the
marker check, the requests, and what a refusal or an unreachable ARI leaves behind."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from asterisk_conf.pjsip_patch import PjsipNotLive, PjsipObject, PjsipPatch
from cli.reload import AriDevicePusher

BASE = "/ari/asterisk/config/dynamic/res_pjsip/"
PATCH = PjsipPatch((PjsipObject("auth", "acme-pekka-soft", (("username", "acme-pekka-soft"), ("password", "x"))),
                    PjsipObject("aor", "acme-pekka-soft", (("max_contacts", "1"),)),
                    PjsipObject("endpoint", "acme-pekka-soft", (("set_var", "A=1"), ("set_var", "B=2"))),
                    PjsipObject("aor", "vipbx-pjsip-new", (("max_contacts", "0"),))),
                   devices=1, expected="vipbx-pjsip-old")


class FakeAri:
    def __init__(self, has: set[str], refuse: str | None = None) -> None:
        self.objects = {f"aor/{name}" for name in has}
        self.refuse = refuse  # the path of a PUT to answer 400
        self.requests: list[tuple[str, str, object]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        where = request.url.path.removeprefix(BASE)
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.method, where, body))
        if request.method == "GET":
            return httpx.Response(200 if where in self.objects else 404, json=[])
        if request.method == "PUT":
            if where == self.refuse:
                return httpx.Response(400, json={"message": "Bad request: attributes were invalid"})
            self.objects.add(where)
            return httpx.Response(200, json=[])
        if where not in self.objects:
            return httpx.Response(404, json={"message": "not found"})
        self.objects.discard(where)
        return httpx.Response(204)


def pusher(fake: FakeAri) -> AriDevicePusher:
    return AriDevicePusher("http://127.0.0.1:1/ari", "vipbx", "pw", 5, transport=httpx.MockTransport(fake))


def test_a_push_checks_the_marker_then_creates_each_object_with_every_field() -> None:
    fake = FakeAri({"vipbx-pjsip-old"})
    asyncio.run(pusher(fake).push(PATCH))
    assert fake.requests[0][:2] == ("GET", "aor/vipbx-pjsip-old")
    assert [r[:2] for r in fake.requests[1:]] == [("PUT", "auth/acme-pekka-soft"), ("PUT", "aor/acme-pekka-soft"),
                                                  ("PUT", "endpoint/acme-pekka-soft"), ("PUT", "aor/vipbx-pjsip-new")]
    assert fake.requests[3][2] == {"fields": [{"attribute": "set_var", "value": "A=1"},
                                              {"attribute": "set_var", "value": "B=2"}]}


def test_asterisk_without_the_old_marker_gets_nothing() -> None:
    fake = FakeAri(set())
    with pytest.raises(PjsipNotLive):
        asyncio.run(pusher(fake).push(PATCH))
    assert [r[0] for r in fake.requests] == ["GET"]


def test_an_unreachable_ari_means_a_reload() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)
    with pytest.raises(PjsipNotLive, match="not reachable"):
        asyncio.run(AriDevicePusher("http://127.0.0.1:1/ari", "u", "p", 5,
                                    transport=httpx.MockTransport(down)).push(PATCH))


def test_a_refused_object_takes_back_what_the_push_created() -> None:
    fake = FakeAri({"vipbx-pjsip-old"}, refuse="endpoint/acme-pekka-soft")
    with pytest.raises(Exception, match="HTTP 400"):
        asyncio.run(pusher(fake).push(PATCH))
    assert fake.objects == {"aor/vipbx-pjsip-old"}
    assert [r[:2] for r in fake.requests[-2:]] == [("DELETE", "aor/acme-pekka-soft"), ("DELETE", "auth/acme-pekka-soft")]


def test_forget_counts_objects_only_in_the_file_or_gone_as_deleted() -> None:
    fake = FakeAri({"vipbx-pjsip-old"})
    fake.objects.add("endpoint/acme-pekka-soft")
    left = asyncio.run(pusher(fake).forget([("endpoint", "acme-pekka-soft"), ("auth", "gone")]))
    assert left == [] and "endpoint/acme-pekka-soft" not in fake.objects

    def failing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text="internal")
    stuck = AriDevicePusher("http://127.0.0.1:1/ari", "u", "p", 5, transport=httpx.MockTransport(failing))
    assert asyncio.run(stuck.forget([("aor", "x")])) == [("aor", "x")]


def test_an_asterisk_without_the_memory_store_gets_a_reload_not_a_failure() -> None:
    """Until Asterisk restarts with sorcery.conf, res_pjsip cannot create objects (403)."""
    fake = FakeAri({"vipbx-pjsip-old"}, refuse="auth/acme-pekka-soft")
    with pytest.raises(PjsipNotLive, match="refused the first object"):
        asyncio.run(pusher(fake).push(PATCH))
    assert fake.objects == {"aor/vipbx-pjsip-old"}


def test_forget_stops_at_an_ari_that_is_gone() -> None:
    calls = []

    def down(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("Connection refused", request=request)
    gone = AriDevicePusher("http://127.0.0.1:1/ari", "u", "p", 5, transport=httpx.MockTransport(down))
    objects = [("aor", "a"), ("auth", "b"), ("endpoint", "c")]
    assert asyncio.run(gone.forget(objects)) == objects and len(calls) == 1
