"""notify against real servers: an SMTP server (aiosmtpd) and Kannel (bearerbox + smsbox, with
Kannel's own `fakesmsc` as the SMSC), each on loopback with free ports, started and stopped here.

Kannel comes from Debian's `kannel` and `kannel-extras` (fakesmsc) packages. Without them the Kannel
tests skip, except under CI (CI=true), where `deploy.sh test` installs them and a skip would hide
a missing install step, so they fail instead.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import shutil
import ssl
import struct
import subprocess
import time
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from conftest import unavailable
from gateways import SMTP_IP, Kannel, MailSink, free_port, kannel_programs

from notify import (
    DeliveryError,
    KannelGateway,
    Notifier,
    RetryPolicy,
    SmtpSender,
    SmtpSettings,
    VoicemailNotice,
    email_subject,
    sms_text,
)

FAST = RetryPolicy(backoff=(0.3,), max_attempts=100)
HELSINKI_WINTER = timezone(timedelta(hours=2))


def make_wav(path: Path, seconds: float = 0.5) -> bytes:
    """A real 8 kHz mono 16-bit wav (a tone), as Asterisk records them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = b"".join(struct.pack("<h", 8000 if (i // 20) % 2 else -8000) for i in range(int(8000 * seconds)))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(frames)
    return path.read_bytes()


def make_notice(tmp_path: Path, **changes: Any) -> VoicemailNotice:
    values: dict[str, Any] = {
        "tenant_id": "acme", "user_id": "anna", "user_name": "Anna Virtanen", "user_number": "+358401110001",
        "email": "anna@acme.example", "language": "fi", "caller_number": "+358451234567",
        "received": datetime(2026, 11, 26, 14, 5, tzinfo=HELSINKI_WINTER), "duration": 12,
        "msg_id": "1764165930-00000001-abcd", "wav": tmp_path / "INBOX" / "msg0000.wav"}
    values.update(changes)
    return VoicemailNotice(**values)


async def wait_for(condition: Any, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll `condition` (a plain or an async callable) until it is true."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class Running:
    """Notifiers given to `start` run in the background until the test ends, then are closed."""

    def __init__(self) -> None:
        self.notifiers: list[Notifier] = []
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, notifier: Notifier) -> Notifier:
        self.notifiers.append(notifier)
        self.tasks.append(asyncio.create_task(notifier.run()))
        return notifier

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for notifier in self.notifiers:
            await notifier.close()
            if isinstance(notifier.sms, KannelGateway):
                await notifier.sms.aclose()


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    runner = Running()
    yield runner
    await runner.stop()


# --- SMTP ----------------------------------------------------------------------------------

@pytest.fixture
def smtp() -> Iterator[tuple[Controller, MailSink]]:
    sink = MailSink()
    controller = Controller(sink, hostname=SMTP_IP, port=free_port(SMTP_IP))
    controller.start()
    yield controller, sink
    controller.stop()


def smtp_settings(controller: Controller, **changes: Any) -> SmtpSettings:
    return SmtpSettings(host=SMTP_IP, port=controller.port, sender="Vastaaja <vastaaja@pbx.example>",
                        timeout=5.0, **changes)


async def test_email_with_recording_reaches_a_real_smtp_server(
        tmp_path: Path, smtp: tuple[Controller, MailSink], running: Running) -> None:
    controller, sink = smtp
    notice = make_notice(tmp_path)
    wav = make_wav(notice.wav)
    notifier = running.start(Notifier(tmp_path / "outbox.sqlite3", email=SmtpSender(smtp_settings(controller)),
                                      policy=FAST))
    await notifier.notify(notice, sms=False, email=True)
    await wait_for(lambda: bool(sink.received), what="the mail")

    (got,) = sink.received
    assert got.mail_from == "vastaaja@pbx.example" and got.rcpt_tos == ["anna@acme.example"]
    msg = got.message
    assert msg["To"] == "anna@acme.example"
    assert msg["Subject"] == email_subject(notice) == "Uusi vastaajaviesti numerosta +358451234567 (0:12)"
    body = msg.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    for line in ("Hei Anna Virtanen,", "Soittaja: +358451234567", "Aika: 26.11.2026 klo 14.05", "Kesto: 0:12",
                 "Viesti on liitteenä (viesti-1764165930-00000001-abcd.wav)."):
        assert line in text.splitlines()
    (part,) = list(msg.iter_attachments())
    assert part.get_content_type() == "audio/wav"
    assert part.get_filename() == "viesti-1764165930-00000001-abcd.wav"
    assert part.get_content() == wav
    await wait_for(lambda: _empty(notifier), what="the outbox to empty")


async def _empty(notifier: Notifier) -> bool:
    return not await notifier.entries()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_email_login(tmp_path: Path) -> None:
    seen: list[tuple[bytes, bytes]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        seen.append((auth_data.login, auth_data.password))
        # handled=False: aiosmtpd itself answers 535 to a failure.
        return AuthResult(success=auth_data.password == b"relay-pass", handled=False)

    sink = MailSink()
    controller = Controller(sink, hostname=SMTP_IP, port=free_port(SMTP_IP), authenticator=authenticator,
                            auth_require_tls=False, auth_required=True)
    controller.start()
    try:
        notice = make_notice(tmp_path, language="en")
        make_wav(notice.wav)
        good = SmtpSender(smtp_settings(controller, username="vipbx", password="relay-pass"))
        await good.send(notice, notice.wav)
        bad = SmtpSender(smtp_settings(controller, username="vipbx", password="wrong"))
        with pytest.raises(DeliveryError) as caught:
            await bad.send(notice, notice.wav)
        assert not caught.value.permanent  # ops can fix a password: keep retrying
        # smtplib tries each mechanism the server offers before it gives up on a password.
        assert seen[0] == (b"vipbx", b"relay-pass") and set(seen[1:]) == {(b"vipbx", b"wrong")}
        assert len(sink.received) == 1
    finally:
        controller.stop()


@pytest.fixture
def relay_cert(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the test relay's address: (certificate, key)."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make the test relay's certificate (Debian package openssl)"
    cert, key = tmp_path / "relay.pem", tmp_path / "relay.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=relay",
                    "-addext", f"subjectAltName=IP:{SMTP_IP}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


async def test_starttls_is_used_and_the_certificate_checked(tmp_path: Path, relay_cert: tuple[Path, Path]) -> None:
    cert, key = relay_cert
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sink = MailSink()
    controller = Controller(sink, hostname=SMTP_IP, port=free_port(SMTP_IP), tls_context=context,
                            require_starttls=True)
    controller.start()
    try:
        notice = make_notice(tmp_path, language="sv")
        make_wav(notice.wav)
        untrusted = SmtpSender(smtp_settings(controller, starttls=True))
        with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            await untrusted.send(notice, notice.wav)
        trusted = SmtpSender(smtp_settings(controller, starttls=True, cafile=str(cert)))
        await trusted.send(notice, notice.wav)
        (got,) = sink.received
        assert got.message["Subject"] == "Nytt röstmeddelande från +358451234567 (0:12)"
    finally:
        controller.stop()


async def test_refused_recipient_is_given_up_at_once(tmp_path: Path, smtp: tuple[Controller, MailSink],
                                                     running: Running, caplog: pytest.LogCaptureFixture) -> None:
    controller, sink = smtp
    sink.refuse.add("gone@acme.example")
    notice = make_notice(tmp_path, email="gone@acme.example")
    make_wav(notice.wav)
    notifier = running.start(Notifier(tmp_path / "outbox.sqlite3", email=SmtpSender(smtp_settings(controller)),
                                      policy=FAST))
    with caplog.at_level(logging.ERROR, logger="notify"):
        await notifier.notify(notice, sms=False, email=True)
        await wait_for(lambda: _given_up(notifier), what="the give-up")
    (row,) = await notifier.entries()
    assert row.attempts == 1 and row.last_error is not None and "550" in row.last_error
    assert "gave up email notification of message 1764165930-00000001-abcd to acme/anna after 1 attempt(s)" \
        in caplog.text
    assert sink.received == []


async def _given_up(notifier: Notifier) -> bool:
    return bool(await notifier.entries("given_up"))


async def test_email_waits_for_the_relay_to_come_up(tmp_path: Path, running: Running) -> None:
    sink = MailSink()
    controller = Controller(sink, hostname=SMTP_IP, port=free_port(SMTP_IP))  # not started yet
    notice = make_notice(tmp_path)
    wav = make_wav(notice.wav)
    notifier = running.start(Notifier(tmp_path / "outbox.sqlite3", email=SmtpSender(smtp_settings(controller)),
                                      policy=FAST))
    await notifier.notify(notice, sms=False, email=True)
    notice.wav.unlink()  # the user deletes the message while the relay is down
    await wait_for(lambda: _failed_at_least(notifier, 2), what="failed attempts")
    controller.start()
    try:
        await wait_for(lambda: bool(sink.received), what="the mail")
        (part,) = list(sink.received[0].message.iter_attachments())
        assert part.get_content() == wav
        await wait_for(lambda: _empty(notifier), what="the outbox to empty")
        assert len(sink.received) == 1
    finally:
        controller.stop()


async def _failed_at_least(notifier: Notifier, attempts: int) -> bool:
    rows = await notifier.entries("pending")
    return bool(rows) and rows[0].attempts >= attempts and rows[0].last_error is not None


# --- Kannel ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def programs() -> dict[str, str]:
    found = kannel_programs()
    if found is None:
        unavailable("Kannel is not installed (Debian packages: kannel kannel-extras)")
    return found


@pytest.fixture
def kannel(programs: dict[str, str], tmp_path: Path) -> Iterator[Kannel]:
    """A Kannel, not yet started: the test decides when."""
    instance = Kannel(programs, tmp_path / "kannel")
    yield instance
    instance.stop()


async def test_sms_through_a_real_kannel(tmp_path: Path, kannel: Kannel, running: Running) -> None:
    await asyncio.to_thread(kannel.start)
    notice = make_notice(tmp_path)
    make_wav(notice.wav)
    notifier = running.start(Notifier(tmp_path / "outbox.sqlite3", sms=KannelGateway(kannel.settings),
                                      policy=FAST))
    await notifier.notify(notice, sms=True, email=False)
    await wait_for(lambda: bool(kannel.delivered()), what="the SMS at the SMSC")
    assert kannel.delivered() == [
        ("VIP", "+358401110001", "Uusi vastaajaviesti numerosta +358451234567 (0:12) 26.11. klo 14.05")]
    assert sms_text(notice) == kannel.delivered()[0][2]
    await wait_for(lambda: _empty(notifier), what="the outbox to empty")


async def test_kannel_answers_as_the_gateway_expects(kannel: Kannel) -> None:
    await asyncio.to_thread(kannel.start)
    gateway = KannelGateway(kannel.settings)
    try:
        await gateway.send("+46701234567", "Nytt röstmeddelande från okänt nummer (1:05) 3.12. kl. 9.41")
        await gateway.send("+358401110001", "Žaneta: 新消息")  # not GSM-7: goes as UCS-2
        with pytest.raises(DeliveryError) as empty:
            await gateway.send("", "x")
        assert empty.value.permanent  # 400: Kannel will never take it
        wrong = KannelGateway(replace(kannel.settings, password="wrong"))
        with pytest.raises(DeliveryError) as denied:
            await wrong.send("+358401110001", "x")
        await wrong.aclose()
        assert not denied.value.permanent and "403" in str(denied.value)
        assert "wrong" not in str(denied.value)
    finally:
        await gateway.aclose()
    await wait_for(lambda: len(kannel.delivered()) >= 2, what="two SMS at the SMSC")
    assert kannel.delivered() == [
        ("VIP", "+46701234567", "Nytt röstmeddelande från okänt nummer (1:05) 3.12. kl. 9.41"),
        ("VIP", "+358401110001", "Žaneta: 新消息"),
    ]


async def test_sms_waits_for_kannel_to_come_up(tmp_path: Path, kannel: Kannel, running: Running) -> None:
    notice = make_notice(tmp_path, language="en", caller_number=None)
    make_wav(notice.wav)
    outbox = tmp_path / "outbox.sqlite3"
    first = running.start(Notifier(outbox, sms=KannelGateway(kannel.settings), policy=FAST))
    await first.notify(notice, sms=True, email=False)  # Kannel is down: the row waits
    await wait_for(lambda: _failed_at_least(first, 2), what="failed attempts")
    (row,) = await first.entries("pending")
    assert row.last_error is not None and "unreachable" in row.last_error

    await asyncio.to_thread(kannel.start)
    await wait_for(lambda: bool(kannel.delivered()), what="the SMS at the SMSC")
    await wait_for(lambda: _empty(first), what="the outbox to empty")
    # A repeat would have been sent before its row left the outbox: a notice queued now is
    # delivered after it, through the same one SMSC connection.
    marker = replace(notice, user_number="+358401110002", msg_id="marker")
    await first.notify(marker, sms=True, email=False)
    await wait_for(lambda: len(kannel.delivered()) >= 2, what="the later notice at the SMSC")
    assert kannel.delivered() == [
        ("VIP", "+358401110001", "New voicemail from an unknown number (0:12) 26 Nov at 14:05"),
        ("VIP", "+358401110002", "New voicemail from an unknown number (0:12) 26 Nov at 14:05")]
