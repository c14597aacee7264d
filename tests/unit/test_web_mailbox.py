"""The Mailbox page and its API over a real spool (messages made through vmstore, as a deposit
makes them) and the real voicemail service; no Asterisk, so the phones' refresh is recorded."""

from __future__ import annotations

import re
import wave
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from webharness import WebHarness, make_harness

import ari_app.voicemail.services as vm_services
from ari_app.voicemail.services import VoicemailService
from base.model import TenantUser
from vmstore import Envelope, Message, new_msg_id
from web.mailbox_service import BadRange, byte_range

OUTSIDE = "+358451234567"
MIKKO_NUMBER = "+358401110002"  # a user of Anna's tenant
JAMES_NUMBER = "+358501220001"  # a user of another tenant
# 2026-07-01 09:30 UTC is 12:30 in Helsinki (summer time).
RECEIVED = datetime(2026, 7, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebHarness]:
    harness = make_harness(tmp_path)
    refreshed: list[tuple[str, str]] = []

    async def refresh(ami: object, context: str, mailbox: str) -> bool:
        refreshed.append((context, mailbox))
        return True

    # The service as `vipbx serve` builds it with AMI: every page change refreshes MWI.
    monkeypatch.setattr(vm_services, "refresh_mwi", refresh)
    harness.deps.voicemail = VoicemailService(harness.config, harness.deps.store, harness.state, None,
                                              object(), tmp_path / "recording")  # type: ignore[arg-type]
    harness.deps.extras["refreshed"] = refreshed
    yield harness
    harness.state.close()


def refreshed(site: WebHarness) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = site.deps.extras["refreshed"]
    return found


def write_wav(path: Path, seconds: float, level: int = 3000) -> bytes:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(level.to_bytes(2, "little", signed=True) * int(8000 * seconds))
    return path.read_bytes()


def deposit(site: WebHarness, box: TenantUser, caller: str | None, tmp: Path, *, seconds: float = 2.0,
            when: datetime = RECEIVED, old: bool = False) -> tuple[Message, bytes]:
    """A message as a caller leaves it: through the store, with its envelope."""
    wav = tmp / f"in-{new_msg_id()}.wav"
    audio = write_wav(wav, seconds, level=1000 + len(list(tmp.iterdir())))
    envelope = Envelope(caller_number=caller, caller_name="Spoofed Name", called_number=box.user.number,
                        orig_time=when, duration=round(seconds), msg_id=new_msg_id())
    message = site.deps.store.add(box.context, box.mailbox, wav, envelope)
    if old:
        message = site.deps.store.mark_old(message)
    return message, audio


def ids(site: WebHarness, box: TenantUser, folder: str) -> list[str]:
    return [m.envelope.msg_id for m in site.deps.store.list(box.context, box.mailbox, folder)]


def mid(message: Message) -> str:
    return message.envelope.msg_id


@pytest.fixture
def anna(site: WebHarness) -> TenantUser:
    return site.who("acme", "anna.virtanen")


async def test_the_page_lists_new_and_old_with_caller_time_and_duration(
        site: WebHarness, anna: TenantUser, tmp_path: Path) -> None:
    from_mikko, _ = deposit(site, anna, MIKKO_NUMBER, tmp_path, seconds=3)
    from_outside, _ = deposit(site, anna, OUTSIDE, tmp_path, seconds=65)
    from_james, _ = deposit(site, anna, JAMES_NUMBER, tmp_path, old=True)
    anonymous, _ = deposit(site, anna, None, tmp_path, old=True)
    async with site.client() as c:
        await site.login(c, anna)
        page = await c.get("/mailbox")
    assert page.status_code == 200
    html = page.text
    new_part, old_part = html.split('id="old-messages-heading"')
    assert mid(from_mikko) in new_part and mid(from_outside) in new_part
    assert mid(from_james) in old_part and mid(anonymous) in old_part
    assert mid(from_james) not in new_part
    # A user of the tenant is named; another tenant's user and an outsider are numbers only, and
    # the name the caller sent is never shown.
    assert "+358401110002 (Mikko Korhonen)" in html
    assert "James" not in html and "Spoofed" not in html
    assert "Tuntematon numero" in html  # Anna reads Finnish
    assert "2026-07-01 12:30" in html  # the tenant's time zone
    assert ">0:03<" in html and ">1:05<" in html
    assert f'src="/mailbox/{mid(from_mikko)}/audio"' in html
    assert f'href="/mailbox/{mid(from_mikko)}/download"' in html
    assert html.count('type="checkbox" name="msg"') == 4
    # Every checkbox has its label; select all / clear selection come with the script.
    for message in (from_mikko, from_outside, from_james, anonymous):
        assert f'<label for="sel-{mid(message)}"' in html
    assert 'id="select-all"' in html and 'id="clear-selection"' in html
    assert '<script src="/static/mailbox.js"' in html
    # Only new messages offer "mark heard".
    assert re.findall(r'name="heard" value="([^"]+)"', html) == [mid(from_mikko), mid(from_outside)]


async def test_the_api_lists_the_same(site: WebHarness, anna: TenantUser, tmp_path: Path) -> None:
    new, _ = deposit(site, anna, MIKKO_NUMBER, tmp_path)
    old, _ = deposit(site, anna, OUTSIDE, tmp_path, old=True)
    async with site.client() as c:
        await site.login(c, anna)
        listed = (await c.get("/api/v1/mailbox")).json()
        one = (await c.get(f"/api/v1/mailbox/messages/{mid(new)}")).json()
        schema = (await c.get("/api/openapi.json")).json()
    assert listed["has_mailbox"] is True
    assert [m["id"] for m in listed["new"]] == [mid(new)]
    assert [m["id"] for m in listed["old"]] == [mid(old)]
    assert one == listed["new"][0]
    assert one["caller_number"] == MIKKO_NUMBER and one["caller_name"] == "Mikko Korhonen"
    assert one["received"] == "2026-07-01T12:30:00+03:00"
    assert one["duration"] == 2 and one["folder"] == "new"
    assert listed["old"][0]["caller_name"] is None
    assert "/api/v1/mailbox/delete" in schema["paths"]
    assert "/api/v1/mailbox/messages/{msg_id}/audio" in schema["paths"]


async def test_empty_mailbox_says_no_messages(site: WebHarness, anna: TenantUser) -> None:
    async with site.client() as c:
        await site.login(c, anna)
        page = await c.get("/mailbox")
        listed = (await c.get("/api/v1/mailbox")).json()
    assert 'id="no-messages"' in page.text and "Ei viestejä." in page.text
    assert listed == {"has_mailbox": True, "greeting": False, "new": [], "old": []}


async def test_a_user_without_voicemail_has_no_mailbox(site: WebHarness, tmp_path: Path) -> None:
    workshop = site.who("acme", "workshop")
    async with site.client() as c:
        csrf = await site.login(c, workshop)
        page = await c.get("/mailbox")
        listed = (await c.get("/api/v1/mailbox")).json()
        refused = await site.post_form(c, "/mailbox/delete", csrf, msg="1-2-3")
    assert 'id="no-mailbox"' in page.text and "Sinulla ei ole vastaajaa." in page.text
    assert listed == {"has_mailbox": False, "greeting": False, "new": [], "old": []}
    assert refused.status_code == 404
    assert 'id="greeting"' not in page.text


async def test_audio_and_download_serve_the_wav(site: WebHarness, anna: TenantUser, tmp_path: Path) -> None:
    message, audio = deposit(site, anna, OUTSIDE, tmp_path)
    async with site.client() as c:
        await site.login(c, anna)
        played = await c.get(f"/mailbox/{mid(message)}/audio")
        part = await c.get(f"/mailbox/{mid(message)}/audio", headers={"range": "bytes=0-43"})
        tail = await c.get(f"/mailbox/{mid(message)}/audio", headers={"range": "bytes=-10"})
        beyond = await c.get(f"/mailbox/{mid(message)}/audio", headers={"range": f"bytes={len(audio)}-"})
        download = await c.get(f"/mailbox/{mid(message)}/download")
        by_api = await c.get(f"/api/v1/mailbox/messages/{mid(message)}/audio?download=true")
    assert played.status_code == 200 and played.content == audio
    assert played.headers["content-type"] == "audio/wav"
    assert played.headers["accept-ranges"] == "bytes"
    assert "content-disposition" not in played.headers
    assert part.status_code == 206 and part.content == audio[:44] and part.content.startswith(b"RIFF")
    assert part.headers["content-range"] == f"bytes 0-43/{len(audio)}"
    assert tail.status_code == 206 and tail.content == audio[-10:]
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(audio)}"
    assert download.content == audio
    assert download.headers["content-disposition"] == f'attachment; filename="voicemail-{mid(message)}.wav"'
    assert by_api.content == audio and by_api.headers["content-disposition"].startswith("attachment")
    # Listening does not move it: marking heard is its own step (the page's player does it).
    assert ids(site, anna, "INBOX") == [mid(message)]


def test_byte_ranges() -> None:
    assert byte_range(None, 100) is None
    assert byte_range("bytes=10-19", 100) == (10, 19)
    assert byte_range("bytes=90-", 100) == (90, 99)
    assert byte_range("bytes=90-500", 100) == (90, 99)
    assert byte_range("bytes=-5", 100) == (95, 99)
    assert byte_range("bytes=0-1,5-6", 100) is None  # several ranges: the whole file
    assert byte_range("items=1-2", 100) is None
    for bad in ("bytes=100-", "bytes=5-4", "bytes=-0"):
        with pytest.raises(BadRange):
            byte_range(bad, 100)


async def test_delete_selected_removes_them_from_the_spool(site: WebHarness, anna: TenantUser,
                                                           tmp_path: Path) -> None:
    first, _ = deposit(site, anna, OUTSIDE, tmp_path)
    second, _ = deposit(site, anna, MIKKO_NUMBER, tmp_path)
    third, _ = deposit(site, anna, OUTSIDE, tmp_path, old=True)
    async with site.client() as c:
        csrf = await site.login(c, anna)
        none = await site.post_form(c, "/mailbox/delete", csrf)
        assert none.status_code == 400 and "Valitse ensin poistettavat viestit." in none.text
        done = await c.post("/mailbox/delete", data={"csrf_token": csrf, "msg": [mid(first), mid(third)]})
        assert done.status_code == 303 and done.headers["location"] == "/mailbox?done=mailbox_deleted"
        after = await c.get(done.headers["location"])
    assert ids(site, anna, "INBOX") == [mid(second)]
    assert ids(site, anna, "Old") == []
    assert site.deps.store.counts(anna.context, anna.mailbox) == (1, 0)
    # The folder stays as app_voicemail keeps it: numbered from 0, audio and envelope.
    inbox = site.deps.store.mailbox_dir(anna.context, anna.mailbox) / "INBOX"
    assert sorted(p.name for p in inbox.iterdir()) == ["msg0000.txt", "msg0000.wav"]
    assert refreshed(site) == [(anna.context, anna.mailbox)]
    assert "Valitut viestit poistettiin." in after.text and mid(first) not in after.text


async def test_a_foreign_id_among_the_selected_deletes_nothing(site: WebHarness, anna: TenantUser,
                                                               tmp_path: Path) -> None:
    mine, _ = deposit(site, anna, OUTSIDE, tmp_path)
    mikko = site.who("acme", "mikko.korhonen")
    theirs, _ = deposit(site, mikko, OUTSIDE, tmp_path)
    async with site.client() as c:
        csrf = await site.login(c, anna)
        refused = await c.post("/mailbox/delete", data={"csrf_token": csrf, "msg": [mid(mine), mid(theirs)]})
        by_api = await c.post("/api/v1/mailbox/delete", json={"ids": [mid(mine), mid(theirs)]},
                              headers={"x-csrf-token": csrf})
    assert refused.status_code == 404 and by_api.status_code == 404
    assert ids(site, anna, "INBOX") == [mid(mine)]
    assert ids(site, mikko, "INBOX") == [mid(theirs)]
    assert refreshed(site) == []


async def test_mark_heard_by_form_and_api(site: WebHarness, anna: TenantUser, tmp_path: Path) -> None:
    first, _ = deposit(site, anna, OUTSIDE, tmp_path)
    second, _ = deposit(site, anna, OUTSIDE, tmp_path)
    async with site.client() as c:
        csrf = await site.login(c, anna)
        done = await site.post_form(c, "/mailbox/heard", csrf, heard=mid(first))
        assert done.status_code == 303 and done.headers["location"] == "/mailbox?done=mailbox_marked_heard"
        assert ids(site, anna, "Old") == [mid(first)]
        no_csrf = await c.post(f"/api/v1/mailbox/messages/{mid(second)}/heard")
        assert no_csrf.status_code == 403 and ids(site, anna, "INBOX") == [mid(second)]
        moved = await c.post(f"/api/v1/mailbox/messages/{mid(second)}/heard", headers={"x-csrf-token": csrf})
        again = await c.post(f"/api/v1/mailbox/messages/{mid(second)}/heard", headers={"x-csrf-token": csrf})
    assert moved.status_code == 200 and moved.json()["folder"] == "old"
    assert again.status_code == 200 and again.json()["folder"] == "old"
    assert ids(site, anna, "INBOX") == []
    assert ids(site, anna, "Old") == [mid(first), mid(second)]
    assert site.deps.store.counts(anna.context, anna.mailbox) == (0, 2)
    assert refreshed(site) == [(anna.context, anna.mailbox)] * 2  # once per move, none for "already old"


async def test_api_deletes_one_and_many(site: WebHarness, anna: TenantUser, tmp_path: Path) -> None:
    one, _ = deposit(site, anna, OUTSIDE, tmp_path)
    two, _ = deposit(site, anna, OUTSIDE, tmp_path)
    three, _ = deposit(site, anna, OUTSIDE, tmp_path, old=True)
    async with site.client() as c:
        csrf = await site.login(c, anna)
        headers = {"x-csrf-token": csrf}
        gone = await c.delete(f"/api/v1/mailbox/messages/{mid(one)}", headers=headers)
        again = await c.delete(f"/api/v1/mailbox/messages/{mid(one)}", headers=headers)
        many = await c.post("/api/v1/mailbox/delete", json={"ids": [mid(two), mid(three)]}, headers=headers)
        empty = await c.post("/api/v1/mailbox/delete", json={"ids": []}, headers=headers)
    assert gone.status_code == 204 and again.status_code == 404
    assert many.status_code == 200 and many.json() == {"deleted": 2}
    assert empty.status_code == 422
    assert site.deps.store.counts(anna.context, anna.mailbox) == (0, 0)


async def routes_answer(c: httpx.AsyncClient, msg_id: str, csrf: str) -> list[int]:
    """Every route of the page and API, naming `msg_id`."""
    headers = {"x-csrf-token": csrf}
    answers = [
        await c.get(f"/mailbox/{msg_id}/audio"),
        await c.get(f"/mailbox/{msg_id}/download"),
        await c.post("/mailbox/delete", data={"csrf_token": csrf, "msg": msg_id}),
        await c.post("/mailbox/heard", data={"csrf_token": csrf, "heard": msg_id}),
        await c.get(f"/api/v1/mailbox/messages/{msg_id}"),
        await c.get(f"/api/v1/mailbox/messages/{msg_id}/audio"),
        await c.post(f"/api/v1/mailbox/messages/{msg_id}/heard", headers=headers),
        await c.delete(f"/api/v1/mailbox/messages/{msg_id}", headers=headers),
        await c.post("/api/v1/mailbox/delete", json={"ids": [msg_id]}, headers=headers),
    ]
    return [a.status_code for a in answers]


async def test_no_route_reaches_another_users_message(site: WebHarness, anna: TenantUser, tmp_path: Path) -> None:
    message, _ = deposit(site, anna, OUTSIDE, tmp_path)
    other_new, _ = deposit(site, anna, OUTSIDE, tmp_path)
    before = (ids(site, anna, "INBOX"), ids(site, anna, "Old"))
    for tenant_id, user_id in (("acme", "mikko.korhonen"), ("borealis", "james.taylor")):
        other = site.who(tenant_id, user_id)
        own, _ = deposit(site, other, OUTSIDE, tmp_path)  # they have messages of their own
        async with site.client() as c:
            csrf = await site.login(c, other)
            assert await routes_answer(c, mid(message), csrf) == [404] * 9, user_id
            page = await c.get("/mailbox")
            listed = (await c.get("/api/v1/mailbox")).json()
        assert mid(message) not in page.text and mid(own) in page.text
        assert [m["id"] for m in listed["new"]] == [mid(own)]
        assert ids(site, other, "INBOX") == [mid(own)]
    assert (ids(site, anna, "INBOX"), ids(site, anna, "Old")) == before
    assert mid(other_new) in before[0]
    assert refreshed(site) == []


async def test_odd_ids_name_nothing(site: WebHarness, anna: TenantUser, tmp_path: Path) -> None:
    deposit(site, anna, OUTSIDE, tmp_path)
    async with site.client() as c:
        csrf = await site.login(c, anna)
        for odd in ("msg0000", "0", "x" * 65, "-1", "a%20b", "INBOX%2Fmsg0000"):
            assert set(await routes_answer(c, odd, csrf)) == {404}, odd
    assert site.deps.store.counts(anna.context, anna.mailbox) == (1, 0)


async def test_anonymous_requests_are_refused(site: WebHarness, anna: TenantUser, tmp_path: Path) -> None:
    message, _ = deposit(site, anna, OUTSIDE, tmp_path)
    async with site.client() as c:
        page = await c.get("/mailbox")
        assert page.status_code == 303 and page.headers["location"].startswith("/login?next=/mailbox")
        audio = await c.get(f"/mailbox/{mid(message)}/audio")
        assert audio.status_code == 303
        assert (await c.post("/mailbox/delete", data={"msg": mid(message)})).status_code == 303
        assert (await c.post("/mailbox/heard", data={"heard": mid(message)})).status_code == 303
        assert set(await routes_answer(c, mid(message), "")) <= {303, 401}
        assert (await c.get("/api/v1/mailbox")).status_code == 401
    assert ids(site, anna, "INBOX") == [mid(message)]


async def test_a_form_without_its_csrf_token_changes_nothing(site: WebHarness, anna: TenantUser,
                                                            tmp_path: Path) -> None:
    message, _ = deposit(site, anna, OUTSIDE, tmp_path)
    async with site.client() as c:
        await site.login(c, anna)
        assert (await c.post("/mailbox/delete", data={"msg": mid(message)})).status_code == 403
        assert (await c.post("/mailbox/heard", data={"heard": mid(message)})).status_code == 403
        assert (await c.delete(f"/api/v1/mailbox/messages/{mid(message)}")).status_code == 403
    assert ids(site, anna, "INBOX") == [mid(message)]


async def test_a_message_the_phone_deleted_meanwhile_is_404(site: WebHarness, anna: TenantUser,
                                                             tmp_path: Path) -> None:
    message, _ = deposit(site, anna, OUTSIDE, tmp_path)
    async with site.client() as c:
        csrf = await site.login(c, anna)
        page = await c.get("/mailbox")
        assert mid(message) in page.text
        site.deps.store.delete(message)  # the phone's 7
        assert (await c.get(f"/mailbox/{mid(message)}/audio")).status_code == 404
        gone = await c.post("/mailbox/delete", data={"csrf_token": csrf, "msg": mid(message)})
    assert gone.status_code == 404


async def test_the_own_greeting_is_played_and_deleted(site: WebHarness, anna: TenantUser, tmp_path: Path) -> None:
    greeting = write_wav(tmp_path / "greeting.wav", 2.0)
    site.deps.store.set_greeting(anna.context, anna.mailbox, tmp_path / "greeting.wav")
    mikko = site.who("acme", "mikko.korhonen")
    async with site.client() as c:
        await site.login(c, mikko)  # another user: only their own (none), never Anna's
        assert (await c.get("/mailbox/greeting/audio")).status_code == 404
        assert (await c.get("/api/v1/mailbox/greeting/audio")).status_code == 404
        assert 'id="default-greeting"' in (await c.get("/mailbox")).text
    async with site.client() as c:
        assert (await c.get("/mailbox/greeting/audio")).status_code == 303  # anonymous
        assert (await c.delete("/api/v1/mailbox/greeting")).status_code == 401
        csrf = await site.login(c, anna)
        page = await c.get("/mailbox")
        assert 'src="/mailbox/greeting/audio"' in page.text and 'id="delete-greeting"' in page.text
        assert (await c.get("/api/v1/mailbox")).json()["greeting"] is True
        played = await c.get("/mailbox/greeting/audio")
        assert played.content == greeting and played.headers["content-type"] == "audio/wav"
        assert (await c.post("/mailbox/greeting/delete")).status_code == 403
        assert site.deps.store.greeting(anna.context, anna.mailbox) is not None
        done = await site.post_form(c, "/mailbox/greeting/delete", csrf)
        assert done.headers["location"] == "/mailbox?done=mailbox_greeting_deleted"
        assert site.deps.store.greeting(anna.context, anna.mailbox) is None
        assert 'id="default-greeting"' in (await c.get("/mailbox")).text
        assert (await c.delete("/api/v1/mailbox/greeting", headers={"x-csrf-token": csrf})).status_code == 404


async def test_the_api_deletes_the_greeting(site: WebHarness, anna: TenantUser, tmp_path: Path) -> None:
    write_wav(tmp_path / "greeting.wav", 2.0)
    site.deps.store.set_greeting(anna.context, anna.mailbox, tmp_path / "greeting.wav")
    async with site.client() as c:
        csrf = await site.login(c, anna)
        assert (await c.get("/api/v1/mailbox/greeting/audio")).content.startswith(b"RIFF")
        assert (await c.delete("/api/v1/mailbox/greeting", headers={"x-csrf-token": csrf})).status_code == 204
    assert site.deps.store.greeting(anna.context, anna.mailbox) is None


async def test_a_message_without_an_id_is_listed_but_not_addressable(site: WebHarness, anna: TenantUser,
                                                                      tmp_path: Path) -> None:
    wav = tmp_path / "no-id.wav"
    write_wav(wav, 1.0)
    envelope = Envelope(caller_number=OUTSIDE, caller_name=None, called_number=anna.user.number,
                        orig_time=RECEIVED, duration=1, msg_id="")
    site.deps.store.add(anna.context, anna.mailbox, wav, envelope)
    async with site.client() as c:
        csrf = await site.login(c, anna)
        page = await c.get("/mailbox")
        listed = (await c.get("/api/v1/mailbox")).json()
        refused = await c.post("/mailbox/delete", data={"csrf_token": csrf, "msg": ""})
    assert OUTSIDE in page.text and "Kuunneltavissa vain puhelimella." in page.text
    assert 'name="msg"' not in page.text and "/mailbox//" not in page.text
    assert listed["new"][0]["audio_url"] is None
    assert refused.status_code == 404  # an empty id names nothing
    assert site.deps.store.counts(anna.context, anna.mailbox) == (1, 0)


async def test_the_phone_in_the_folder_meanwhile_skips_what_the_page_deleted(
        site: WebHarness, anna: TenantUser, tmp_path: Path) -> None:
    first, _ = deposit(site, anna, OUTSIDE, tmp_path)
    second, _ = deposit(site, anna, MIKKO_NUMBER, tmp_path)
    service = site.deps.voicemail
    visit = await service.open_folder(anna, "INBOX")  # the caller is in the new messages
    async with site.client() as c:
        csrf = await site.login(c, anna)
        await c.post("/mailbox/delete", data={"csrf_token": csrf, "msg": mid(first)})
    # The phone is told the first is gone (the menu then plays the next at the same place).
    assert await service.message_at(visit, 0) is None
    now = await service.message_at(visit, 0)
    assert now is not None and mid(now) == mid(second)
    assert len(visit) == 1
    await service.close_folder(visit)
    assert ids(site, anna, "INBOX") == [mid(second)]
