"""notify: texts, the Kannel request, the e-mail, and the outbox's durability, retries and give-up.

Gateways are fakes here and time is an injected clock; tests/e2e/test_notify_real.py runs the
same code against a real SMTP server and a real Kannel.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from notify import (
    Attachment,
    DeliveryError,
    KannelGateway,
    KannelSettings,
    Notifier,
    RetryPolicy,
    VoicemailNotice,
    attachment_name,
    compose,
    duration_text,
    email_body,
    email_subject,
    is_gsm7,
    sms_text,
)

HELSINKI_WINTER = timezone(timedelta(hours=2))  # fixed offset: no tzdata needed
RECEIVED = datetime(2026, 11, 26, 14, 5, 30, tzinfo=HELSINKI_WINTER)
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256))


def make_notice(tmp_path: Path, language: str = "fi", **changes: object) -> VoicemailNotice:
    wav = tmp_path / "mailbox" / "msg0000.wav"
    wav.parent.mkdir(exist_ok=True)
    if not wav.exists():
        wav.write_bytes(WAV)
    notice = VoicemailNotice(
        tenant_id="acme", user_id="anna", user_name="Anna Virtanen", user_number="+358401110001",
        email="anna@acme.example", language=language, caller_number="+358451234567",
        received=RECEIVED, duration=12, msg_id="1764165930-00000001-abcd", wav=wav)
    return replace(notice, **changes)  # type: ignore[arg-type]


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeSms:
    def __init__(self, failures: int = 0, error: Exception | None = None) -> None:
        self.failures = failures  # fail this many times, then accept
        self.error = error or DeliveryError("gateway down")
        self.sent: list[tuple[str, str]] = []
        self.calls = 0

    async def send(self, to: str, text: str) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        self.sent.append((to, text))


class FakeEmail:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sent: list[EmailMessage] = []
        self.calls = 0

    async def send(self, notice: VoicemailNotice, wav: Path | None) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionRefusedError("relay down")  # an untyped failure counts as temporary
        self.sent.append(compose(notice, "Vastaaja <vm@pbx.example>", wav))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def notifiers(tmp_path: Path) -> AsyncIterator[list[Notifier]]:
    """Notifiers made by a test are closed at its end."""
    made: list[Notifier] = []
    yield made
    for notifier in made:
        await notifier.close()


def new_notifier(made: list[Notifier], path: Path, clock: Clock, **kwargs: object) -> Notifier:
    kwargs.setdefault("policy", RetryPolicy(backoff=(10, 60, 300, 1800), max_attempts=5))
    notifier = Notifier(path, clock=clock, **kwargs)  # type: ignore[arg-type]
    made.append(notifier)
    return notifier


# --- texts ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("language", "sms", "subject"), [
    ("fi", "Uusi vastaajaviesti numerosta +358451234567 (0:12) 26.11. klo 14.05",
     "Uusi vastaajaviesti numerosta +358451234567 (0:12)"),
    ("sv", "Nytt röstmeddelande från +358451234567 (0:12) 26.11. kl. 14.05",
     "Nytt röstmeddelande från +358451234567 (0:12)"),
    ("en", "New voicemail from +358451234567 (0:12) 26 Nov at 14:05",
     "New voicemail from +358451234567 (0:12)"),
])
def test_sms_and_subject_per_language(tmp_path: Path, language: str, sms: str, subject: str) -> None:
    notice = make_notice(tmp_path, language)
    assert sms_text(notice) == sms
    assert email_subject(notice) == subject
    assert is_gsm7(sms) and len(sms) <= 160  # one 7-bit SMS, ä/ö included


@pytest.mark.parametrize(("language", "sms", "caller_line"), [
    ("fi", "Uusi vastaajaviesti tuntemattomasta numerosta (0:12) 26.11. klo 14.05", "Soittaja: tuntematon"),
    ("sv", "Nytt röstmeddelande från okänt nummer (0:12) 26.11. kl. 14.05", "Från: okänt nummer"),
    ("en", "New voicemail from an unknown number (0:12) 26 Nov at 14:05", "From: unknown"),
])
def test_withheld_caller(tmp_path: Path, language: str, sms: str, caller_line: str) -> None:
    notice = make_notice(tmp_path, language, caller_number=None)
    assert sms_text(notice) == sms
    assert caller_line in email_body(notice)


@pytest.mark.parametrize(("language", "lines"), [
    ("fi", ["Hei Anna Virtanen,", "Soittaja: +358451234567", "Aika: 26.11.2026 klo 14.05", "Kesto: 0:12",
            "Viesti on liitteenä (viesti-1764165930-00000001-abcd.wav)."]),
    ("sv", ["Hej Anna Virtanen,", "Från: +358451234567", "Tid: 26.11.2026 kl. 14.05", "Längd: 0:12",
            "Meddelandet finns som bilaga (meddelande-1764165930-00000001-abcd.wav)."]),
    ("en", ["Hello Anna Virtanen,", "From: +358451234567", "Time: 26 Nov 2026 at 14:05", "Length: 0:12",
            "The recording is attached (message-1764165930-00000001-abcd.wav)."]),
])
def test_email_body_per_language(tmp_path: Path, language: str, lines: list[str]) -> None:
    body = email_body(make_notice(tmp_path, language)).splitlines()
    for line in lines:
        assert line in body


@pytest.mark.parametrize(("language", "missing", "too_large"), [
    ("fi", "poistettu vastaajasta", "liian suuri"),
    ("sv", "raderats ur röstbrevlådan", "för stor"),
    ("en", "deleted from your mailbox", "too large"),
])
def test_email_body_says_why_nothing_is_attached(tmp_path: Path, language: str, missing: str, too_large: str) -> None:
    notice = make_notice(tmp_path, language)
    assert missing in email_body(notice, Attachment.MISSING)
    assert too_large in email_body(notice, Attachment.TOO_LARGE)
    assert ".wav" not in email_body(notice, Attachment.MISSING)


def test_durations_and_attachment_names(tmp_path: Path) -> None:
    assert [duration_text(s) for s in (0, 12, 185, 3723)] == ["0:00", "0:12", "3:05", "1:02:03"]
    assert attachment_name(make_notice(tmp_path, "fi", msg_id="a/b c")) == "viesti-a_b_c.wav"
    assert attachment_name(make_notice(tmp_path, "en")) == "message-1764165930-00000001-abcd.wav"


def test_notice_checks_its_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="aware"):
        make_notice(tmp_path, received=datetime(2026, 11, 26, 14, 5))
    with pytest.raises(ValueError, match="language"):
        make_notice(tmp_path, language="de")
    with pytest.raises(ValueError, match="E.164"):
        make_notice(tmp_path, user_number="0401110001")


async def test_texts_use_the_notifiers_timezone(tmp_path: Path, clock: Clock, notifiers: list[Notifier]) -> None:
    sms = FakeSms()
    notifier = new_notifier(notifiers, tmp_path / "outbox.sqlite3", clock, sms=sms, tz=HELSINKI_WINTER)
    utc = datetime(2026, 11, 26, 12, 5, tzinfo=UTC)  # 14.05 in Helsinki
    await notifier.notify(make_notice(tmp_path, received=utc), sms=True, email=False)
    await notifier.run_once()
    assert sms.sent == [("+358401110001", "Uusi vastaajaviesti numerosta +358451234567 (0:12) 26.11. klo 14.05")]


# --- Kannel request ------------------------------------------------------------------------

KANNEL = KannelSettings(url="http://kannel.test:13013/cgi-bin/sendsms", username="vipbx",
                        password="s3cret", sender="VIP")


def kannel(status: int, body: str, seen: list[httpx.Request] | None = None) -> KannelGateway:
    def answer(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, text=body)

    return KannelGateway(KANNEL, transport=httpx.MockTransport(answer))


async def test_kannel_request_parameters() -> None:
    seen: list[httpx.Request] = []
    gateway = kannel(202, "0: Accepted for delivery", seen)
    await gateway.send("+358401110001", "Uusi vastaajaviesti äö")
    await gateway.send("+358401110001", "Новое сообщение")
    await gateway.aclose()
    first, second = (parse_qs(urlsplit(str(r.url)).query) for r in seen)
    assert seen[0].method == "GET" and seen[0].url.path == "/cgi-bin/sendsms"
    assert first == {"username": ["vipbx"], "password": ["s3cret"], "to": ["+358401110001"],
                     "text": ["Uusi vastaajaviesti äö"], "charset": ["UTF-8"], "from": ["VIP"]}
    assert second["coding"] == ["2"] and second["text"] == ["Новое сообщение"]  # not GSM-7: UCS-2


async def test_kannel_sends_from_a_given_sender() -> None:
    """The home page's SMS: from the user's own number instead of the platform's sender."""
    seen: list[httpx.Request] = []
    gateway = kannel(202, "0: Accepted for delivery", seen)
    await gateway.send("+358401110002", "Soitan kohta", sender="+358401110001")
    await gateway.aclose()
    assert parse_qs(urlsplit(str(seen[0].url)).query)["from"] == ["+358401110001"]


@pytest.mark.parametrize("body", ["0: Accepted for delivery", "3: Queued for later delivery"])
async def test_kannel_accepts(body: str) -> None:
    gateway = kannel(202, body)
    await gateway.send("+358401110001", "x")
    await gateway.aclose()


@pytest.mark.parametrize(("status", "body", "permanent"), [
    (403, "Authorization failed for sendsms", False),
    (400, "Empty receiver number not allowed, rejected", True),
    (503, "Sending failed.", False),
    (202, "4: Something else", False),
    (200, "OK", False),
])
async def test_kannel_refusals_raise(status: int, body: str, permanent: bool) -> None:
    gateway = kannel(status, body)
    with pytest.raises(DeliveryError) as caught:
        await gateway.send("+358401110001", "x")
    await gateway.aclose()
    assert caught.value.permanent is permanent
    assert str(status) in str(caught.value) and "s3cret" not in str(caught.value)


async def test_kannel_unreachable_is_temporary_and_hides_the_password() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    gateway = KannelGateway(KANNEL, transport=httpx.MockTransport(refuse))
    with pytest.raises(DeliveryError) as caught:
        await gateway.send("+358401110001", "x")
    await gateway.aclose()
    assert not caught.value.permanent and "kannel.test:13013" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_gsm7() -> None:
    assert is_gsm7("Nytt röstmeddelande från +358 (0:12) 26.11. kl. 14.05 ÅÄÖåäöé€[]")
    assert not is_gsm7("Ž") and not is_gsm7("š") and not is_gsm7("😀")


# --- the e-mail ----------------------------------------------------------------------------

def test_compose_attaches_the_recording(tmp_path: Path) -> None:
    notice = make_notice(tmp_path, "sv")
    msg = compose(notice, "Röstbrevlådan <vm@pbx.example>", notice.wav)
    assert msg["To"] == "anna@acme.example" and msg["Subject"] == email_subject(notice)
    assert msg["Message-ID"] == "<vipbx-vm.acme.anna.1764165930-00000001-abcd@pbx.example>"
    (part,) = list(msg.iter_attachments())
    assert part.get_content_type() == "audio/wav"
    assert part.get_filename() == "meddelande-1764165930-00000001-abcd.wav"
    assert part.get_content() == WAV
    body = msg.get_body(("plain",))
    assert body is not None and "Meddelandet finns som bilaga" in body.get_content()


def test_compose_without_the_recording(tmp_path: Path) -> None:
    notice = make_notice(tmp_path, "en")
    gone = compose(notice, "vm@pbx.example", tmp_path / "nothing.wav")
    big = compose(notice, "vm@pbx.example", notice.wav, max_attachment_bytes=10)
    for msg, why in ((gone, "deleted"), (big, "too large")):
        assert not list(msg.iter_attachments())
        body = msg.get_body(("plain",))
        assert body is not None and why in body.get_content()


# --- the outbox: durability ------------------------------------------------------------------

async def test_notify_only_queues_and_returns_at_once(tmp_path: Path, clock: Clock,
                                                      notifiers: list[Notifier]) -> None:
    class Hanging:
        async def send(self, to: str, text: str) -> None:
            await asyncio.Event().wait()

    notifier = new_notifier(notifiers, tmp_path / "outbox.sqlite3", clock, sms=Hanging(), email=FakeEmail())
    async with asyncio.timeout(2):
        await notifier.notify(make_notice(tmp_path), sms=True, email=True)
    rows = await notifier.entries("pending")
    assert sorted(row.channel for row in rows) == ["email", "sms"]
    # On disk before notify() returned: another connection sees it.
    with sqlite3.connect(tmp_path / "outbox.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone() == (2,)


async def test_queued_notice_survives_a_restart(tmp_path: Path, clock: Clock, notifiers: list[Notifier]) -> None:
    path = tmp_path / "outbox.sqlite3"
    down_sms, down_mail = FakeSms(failures=99), FakeEmail(failures=99)
    first = new_notifier(notifiers, path, clock, sms=down_sms, email=down_mail)
    notice = make_notice(tmp_path)
    await first.notify(notice, sms=True, email=True)
    assert await first.run_once() == 2 and not down_sms.sent and not down_mail.sent
    await first.close()  # the process "stops"
    notice.wav.unlink()  # and the user deletes the message from the mailbox meanwhile

    clock.advance(10)
    sms, mail = FakeSms(), FakeEmail()
    second = new_notifier(notifiers, path, clock, sms=sms, email=mail)
    assert await second.run_once() == 2
    assert sms.sent == [("+358401110001", sms_text(notice))]
    (msg,) = mail.sent
    (part,) = list(msg.iter_attachments())  # the outbox kept its own copy of the recording
    assert part.get_content() == WAV and part.get_filename() == attachment_name(notice)
    assert await second.entries() == []
    assert list((tmp_path / "outbox-files").iterdir()) == []  # the copy goes with the row


async def test_recording_gone_before_queueing(tmp_path: Path, clock: Clock, notifiers: list[Notifier]) -> None:
    mail = FakeEmail()
    notifier = new_notifier(notifiers, tmp_path / "outbox.sqlite3", clock, email=mail)
    notice = make_notice(tmp_path)
    notice.wav.unlink()
    await notifier.notify(notice, sms=False, email=True)
    await notifier.run_once()
    (msg,) = mail.sent
    body = msg.get_body(("plain",))
    assert not list(msg.iter_attachments())
    assert body is not None and "poistettu vastaajasta" in body.get_content()


async def test_a_send_interrupted_by_a_crash_is_retried_after_the_lease(
        tmp_path: Path, clock: Clock, notifiers: list[Notifier]) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = new_notifier(notifiers, path, clock, sms=FakeSms(), lease=300)
    await first.notify(make_notice(tmp_path), sms=True, email=False)
    # The process dies between claiming the row and finishing the send.
    await first._db(lambda box: [box.claim(e, clock(), first.lease) for e in box.due(clock(), ["sms"])])
    await first.close()

    sms = FakeSms()
    second = new_notifier(notifiers, path, clock, sms=sms, lease=300)
    assert await second.run_once() == 0  # still leased: maybe the other process is sending
    clock.advance(300)
    assert await second.run_once() == 1 and len(sms.sent) == 1


async def test_two_processes_never_send_the_same_row_twice(tmp_path: Path, clock: Clock,
                                                           notifiers: list[Notifier]) -> None:
    path = tmp_path / "outbox.sqlite3"
    sms_a, sms_b = FakeSms(), FakeSms()
    a = new_notifier(notifiers, path, clock, sms=sms_a)
    b = new_notifier(notifiers, path, clock, sms=sms_b)
    for n in range(10):
        await a.notify(make_notice(tmp_path, msg_id=f"m{n}"), sms=True, email=False)
    for _ in range(10):
        await asyncio.gather(a.run_once(), b.run_once())
    texts = [text for _, text in sms_a.sent + sms_b.sent]
    assert len(texts) == 10 and await a.entries() == []


async def test_unconfigured_channel_queues_nothing(tmp_path: Path, clock: Clock, notifiers: list[Notifier],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    notifier = new_notifier(notifiers, tmp_path / "outbox.sqlite3", clock, sms=FakeSms())
    with caplog.at_level(logging.WARNING, logger="notify"):
        await notifier.notify(make_notice(tmp_path), sms=False, email=True)
        await notifier.notify(make_notice(tmp_path), sms=False, email=True)
    assert await notifier.entries() == []
    assert [r.getMessage() for r in caplog.records].count(
        "no email gateway configured: email notifications are not sent") == 1


# --- retries, backoff, give-up ---------------------------------------------------------------

async def test_retry_backoff_schedule(tmp_path: Path, clock: Clock, notifiers: list[Notifier]) -> None:
    sms = FakeSms(failures=3)
    notifier = new_notifier(notifiers, tmp_path / "outbox.sqlite3", clock, sms=sms)
    await notifier.notify(make_notice(tmp_path), sms=True, email=False)
    start = clock()
    tries_at: list[float] = []
    for _ in range(2000):  # step the clock one second at a time, for at most ~33 minutes
        if await notifier.run_once():
            tries_at.append(clock() - start)
        if sms.sent:
            break
        clock.advance(1)
    assert tries_at == [0, 10, 70, 370]  # failed, +10 s, +60 s, +300 s: sent
    assert await notifier.entries() == []


async def test_failed_attempts_are_recorded(tmp_path: Path, clock: Clock, notifiers: list[Notifier]) -> None:
    notifier = new_notifier(notifiers, tmp_path / "outbox.sqlite3", clock, sms=FakeSms(failures=99))
    await notifier.notify(make_notice(tmp_path), sms=True, email=False)
    await notifier.run_once()
    clock.advance(10)
    await notifier.run_once()
    (row,) = await notifier.entries("pending")
    assert row.attempts == 2 and row.last_error == "gateway down" and row.next_at == clock() + 60


async def test_gives_up_after_max_attempts_and_logs_it(tmp_path: Path, clock: Clock, notifiers: list[Notifier],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    mail = FakeEmail(failures=99)
    notifier = new_notifier(notifiers, tmp_path / "outbox.sqlite3", clock, email=mail,
                            policy=RetryPolicy(backoff=(10, 60), max_attempts=3))
    await notifier.notify(make_notice(tmp_path), sms=False, email=True)
    with caplog.at_level(logging.INFO, logger="notify"):
        for _ in range(3):
            assert await notifier.run_once() == 1
            clock.advance(60)
        clock.advance(3600)
        assert await notifier.run_once() == 0  # nothing more is tried
    assert mail.calls == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(warnings) == 2 and "retrying in 10 s" in warnings[0].getMessage()
    (gave_up,) = errors
    assert gave_up.getMessage().startswith(
        "gave up email notification of message 1764165930-00000001-abcd to acme/anna after 3 attempt(s)")
    assert "ConnectionRefusedError: relay down" in gave_up.getMessage()
    (row,) = await notifier.entries("given_up")
    assert row.attempts == 3 and row.attachment is None
    assert list((tmp_path / "outbox-files").iterdir()) == []


async def test_permanent_failure_gives_up_at_once(tmp_path: Path, clock: Clock, notifiers: list[Notifier],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    sms = FakeSms(failures=99, error=DeliveryError("Kannel answered 400: bad number", permanent=True))
    notifier = new_notifier(notifiers, tmp_path / "outbox.sqlite3", clock, sms=sms)
    await notifier.notify(make_notice(tmp_path), sms=True, email=False)
    with caplog.at_level(logging.ERROR, logger="notify"):
        await notifier.run_once()
    assert "after 1 attempt(s) (permanent failure)" in caplog.text
    assert len(await notifier.entries("given_up")) == 1


async def test_channels_retry_independently(tmp_path: Path, clock: Clock, notifiers: list[Notifier]) -> None:
    sms, mail = FakeSms(), FakeEmail(failures=1)
    notifier = new_notifier(notifiers, tmp_path / "outbox.sqlite3", clock, sms=sms, email=mail)
    await notifier.notify(make_notice(tmp_path), sms=True, email=True)
    await notifier.run_once()
    clock.advance(10)
    await notifier.run_once()
    assert len(sms.sent) == 1 and len(mail.sent) == 1  # the SMS was not sent twice


async def test_sweep_prunes_old_given_up_rows(tmp_path: Path, clock: Clock, notifiers: list[Notifier]) -> None:
    notifier = new_notifier(notifiers, tmp_path / "outbox.sqlite3", clock,
                            sms=FakeSms(failures=1, error=DeliveryError("no", permanent=True)), keep_given_up=86400)
    await notifier.notify(make_notice(tmp_path), sms=True, email=False)
    await notifier.run_once()
    leftover = tmp_path / "outbox-files" / "orphan.wav"
    leftover.write_bytes(b"x")
    clock.advance(86401)
    await notifier._db(lambda box: box.sweep(clock(), notifier.keep_given_up))
    assert await notifier.entries() == [] and not leftover.exists()


# --- the background task -----------------------------------------------------------------------

async def test_run_sends_when_woken_and_retries_on_time(tmp_path: Path, notifiers: list[Notifier]) -> None:
    sms = FakeSms(failures=1)
    notifier = Notifier(tmp_path / "outbox.sqlite3", sms=sms, policy=RetryPolicy(backoff=(0.2,), max_attempts=3))
    notifiers.append(notifier)
    task = asyncio.create_task(notifier.run())
    try:
        await asyncio.sleep(0.1)  # idle, waiting
        await notifier.notify(make_notice(tmp_path), sms=True, email=False)
        async with asyncio.timeout(5):
            while not sms.sent:
                await asyncio.sleep(0.02)
        assert sms.calls == 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
