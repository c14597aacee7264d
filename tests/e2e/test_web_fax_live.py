"""Fax end to end: the user turns fax receiving on in the browser; the test phone, as a fax
machine, calls the user's number from outside and sends a two-page TIFF with SendFax() over
G.711; the PBX hears the calling tone, receives the fax with ReceiveFax(), and the service e-mails
it as a PDF to a real SMTP server (aiosmtpd); the page then lists it and serves the same PDF."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import httpx
import pytest
from aiosmtpd.controller import Controller
from faxpdf import page_images
from gateways import SMTP_IP, MailSink, free_port
from PIL import Image, ImageDraw, ImageOps
from support import eventually
from webrig import Site

from ari_app.fax.services import FaxService
from notify import Messenger, SmtpSender, SmtpSettings

pytest_plugins = ("support", "webrig")

OUTSIDE = "+358401234567"
FAX_TO = "faxes@acme.example"
PAGES = 2
WIDTH, LINES = 1728, 2200  # dots and lines of a sent page (204 x 196 dpi)
BAR_TOP, BAR_BOTTOM, BAR_LEFT = 300, 500, 200  # the black bar of page n ends at 700 + 400 n


def bar_right(n: int) -> int:
    return 700 + 400 * n
PAGE_OBJECT = re.compile(rb"/Type\s*/Page\b(?!s)")


@pytest.fixture
def smtp() -> Iterator[tuple[Controller, MailSink]]:
    sink = MailSink()
    controller = Controller(sink, hostname=SMTP_IP, port=free_port(SMTP_IP))
    controller.start()
    yield controller, sink
    controller.stop()


def fax_service(site: Site) -> FaxService:
    assert site.rig.app is not None
    found = [job.__self__ for job in site.rig.app.service.background if isinstance(getattr(job, "__self__", None), FaxService)]
    assert len(found) == 1, "the fax plugin's delivery loop is not running"
    return found[0]


def make_fax(site: Site) -> str:
    """A two-page fax document: 1728 dots wide, G4, 204 x 196 dpi, a black bar on each page
    (wider on the second). Written where the test phone's Asterisk reads its media."""
    path = site.rig.pbx.home / "phone" / "sounds" / "e2e-fax.tif"
    pages = []
    for n in range(PAGES):
        page = Image.new("1", (WIDTH, LINES), 1)
        ImageDraw.Draw(page).rectangle((BAR_LEFT, BAR_TOP, bar_right(n), BAR_BOTTOM), fill=0)
        pages.append(page)
    pages[0].save(path, compression="group4", dpi=(204, 196), save_all=True, append_images=pages[1:])
    path.chmod(0o644)
    return str(path)


async def test_a_fax_to_the_users_number_is_emailed_as_pdf_and_listed(
        site: Site, smtp: tuple[Controller, MailSink]) -> None:
    controller, sink = smtp
    anna = site.who("acme", "anna.virtanen")
    state = site.rig.state
    # The running service's delivery loop sends through this relay (the session's PBX has none).
    fax_service(site).messenger = Messenger(None, SmtpSender(SmtpSettings(
        host=SMTP_IP, port=controller.port, sender="Faksi <faksi@pbx.example>")))

    b = site.browser
    await site.log_in(anna)
    await asyncio.to_thread(b.open, "/services/fax")
    assert b.find("#fax-off").is_selected()
    await asyncio.to_thread(b.click, "#fax-on")
    await asyncio.to_thread(b.type_into, "#fax-email", FAX_TO)
    await asyncio.to_thread(b.click, "#fax-settings button[type=submit]")
    await asyncio.to_thread(b.wait_for, ".notice")
    settings = state.fax.settings("acme", "anna.virtanen")
    assert (settings.enabled, settings.email) == (True, FAX_TO)

    before = {f.id for f in state.fax.received("acme", "anna.virtanen")}
    tiff = make_fax(site)
    call = await site.rig.phone.call(anna.user.number, caller_number=OUTSIDE)
    await call.wait_state("Up", 15)  # answered by the PBX, which listens for a fax's tone
    await call.send_fax(tiff)

    mail = await eventually(lambda: sink.received[0] if sink.received else None, 120, "the fax by e-mail")
    assert mail.rcpt_tos == [FAX_TO]
    assert OUTSIDE in str(mail.message["Subject"])
    (part,) = [p for p in mail.message.iter_attachments()]
    assert part.get_content_type() == "application/pdf"
    pdf = part.get_content()
    assert pdf.startswith(b"%PDF") and len(PAGE_OBJECT.findall(pdf)) == PAGES
    # What came out on paper: on each page the black bar of the page sent, where it was sent.
    images = page_images(pdf)
    assert len(images) == PAGES
    for n, image in enumerate(images):
        assert image.width == WIDTH
        left, top, right, bottom = ImageOps.invert(image.convert("L")).getbbox()
        assert abs(left - BAR_LEFT) <= 4 and abs(right - 1 - bar_right(n)) <= 4, (n, left, right)
        assert top / image.height == pytest.approx(BAR_TOP / LINES, abs=0.01), (n, top, image.height)
        assert bottom / image.height == pytest.approx((BAR_BOTTOM + 1) / LINES, abs=0.01), (n, bottom)

    # The relay holds the mail before the sender hears its final answer and marks the row sent.
    def delivered() -> object:
        (row,) = [f for f in state.fax.received("acme", "anna.virtanen") if f.id not in before]
        return row if row.delivery == "sent" else None
    row = await eventually(delivered, 10, "the fax marked as sent")
    assert (row.caller, row.pages, row.status, row.delivery) == (OUTSIDE, PAGES, "received", "sent")
    assert all(f.id != row.id for f in state.fax.received("acme", "mikko.korhonen"))

    await asyncio.to_thread(b.open, "/services/fax")
    assert b.find(f"#fax-{row.id} .fax-pages").text == str(PAGES)
    assert OUTSIDE in b.find(f"#fax-{row.id} .fax-sender").text
    await asyncio.to_thread(b.screenshot, "fax")
    await asyncio.to_thread(b.screenshot, "fax-phone", phone=True)
    href = b.find(f"#fax-{row.id} .fax-pdf").get_attribute("href")
    cookies = {c["name"]: c["value"] for c in b.driver.get_cookies()}
    async with httpx.AsyncClient(cookies=cookies) as client:
        download = await client.get(href)
    assert download.status_code == 200 and download.content == pdf


async def test_a_voice_call_to_a_fax_user_still_rings_and_hears_ringing(site: Site) -> None:
    """No fax tone: after the listening window the user's device rings as usual, the caller
    hears ringing meanwhile, and no fax is recorded."""
    anna = site.who("acme", "anna.virtanen")
    state = site.rig.state
    state.fax.set_settings("acme", "anna.virtanen", enabled=True, email=None, actor="e2e", source="test")
    device = anna.user.devices[0].id
    before = state.fax.received("acme", "anna.virtanen")
    call = await site.rig.phone.call(anna.user.number, caller_number=OUTSIDE)
    await call.wait_state("Up", 15)  # answered at once: listening for a fax
    leg = await site.rig.phone.incoming(device, 30)
    heard = call.audio_seconds
    assert await call.heard_audio(heard + 2, timeout=10), "the caller hears nothing while the device rings"
    await leg.answer()
    await leg.wait_state("Up", 10)
    await call.hangup()
    await leg.wait_hangup(10)
    assert state.fax.received("acme", "anna.virtanen") == before
