"""Fax: the state (settings, received faxes, delivery queue), the TIFF → PDF conversion, the
delivery loop, the FastAGI script, and the page and API with their isolation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from webharness import make_harness

from agi.server import AgiApplication
from ari_app.fax.convert import ConversionError, tiff_to_pdf
from ari_app.fax.services import FaxService
from base.paths import Paths
from callstate import SettingsError
from notify.errors import DeliveryError

ANNA = ("acme", "anna.virtanen")
MIKKO = ("acme", "mikko.korhonen")
JAMES = ("borealis", "james.taylor")


def fax_tiff(path: Path, pages: int = 2, *, fine: bool = False) -> Path:
    """A fax-like TIFF: 1728 dots wide, bilevel, G4, 204 x 98 (or 196) dpi."""
    dpi = (204, 196 if fine else 98)
    frames = []
    for n in range(pages):
        im = Image.new("1", (1728, 1100 if fine else 550), 1)
        ImageDraw.Draw(im).rectangle((100 + 50 * n, 100, 600, 300), fill=0)
        frames.append(im)
    frames[0].save(path, compression="group4", dpi=dpi, save_all=True, append_images=frames[1:])
    return path


def record(state, who=ANNA, pages=2, tiff="1733.1.tif", ok=True) -> int:
    return state.fax.record(*who, caller="+358401111111", remote_id="ACME FAX", pages=pages, ok=ok,
                            error="", tiff=tiff)


# ---------------------------------------------------------------------------- state

def test_settings_default_off_with_yaml_email_and_audited(tmp_path: Path) -> None:
    site = make_harness(tmp_path)
    fax = site.state.fax
    s = fax.settings(*ANNA)
    assert (s.enabled, s.email, s.own_email) == (False, "anna.virtanen@acme.example", False)
    assert not fax.enabled(*ANNA)
    fax.set_settings(*ANNA, enabled=True, email="Faxes@Acme.example", actor="t", source="web")
    s = fax.settings(*ANNA)
    assert (s.enabled, s.email, s.own_email) == (True, "Faxes@Acme.example", True)
    assert fax.enabled(*ANNA) and not fax.enabled(*MIKKO) and not fax.enabled("acme", "nobody")
    fields = {e.field for e in site.state.store.audit(*ANNA)}
    assert {"fax.enabled", "fax.email"} <= fields
    fax.set_settings(*ANNA, enabled=True, email="", actor="t", source="web")
    assert fax.settings(*ANNA).email == "anna.virtanen@acme.example"


@pytest.mark.parametrize("bad", ["x", "a@b", "a@b.c\r\nBcc: x@y.z", "<a@b.fi>", "a b@c.fi"])
def test_bad_addresses_are_refused(tmp_path: Path, bad: str) -> None:
    site = make_harness(tmp_path)
    with pytest.raises(SettingsError):
        site.state.fax.set_settings(*ANNA, enabled=True, email=bad, actor="t", source="web")
    assert not site.state.fax.settings(*ANNA).enabled


def test_record_and_due_and_retry(tmp_path: Path) -> None:
    site = make_harness(tmp_path)
    fax = site.state.fax
    fax.set_settings(*ANNA, enabled=True, email=None, actor="t", source="web")
    first = record(site.state)
    empty = record(site.state, pages=0, ok=False)
    assert [f.id for f in fax.due()] == [first]
    assert fax.find(*ANNA, empty).delivery == "none"
    assert fax.find(*MIKKO, first) is None and fax.find(*JAMES, first) is None
    fax.delivery_failed(first, "smtp down", timedelta(minutes=5))
    assert fax.due() == []
    fax.delivery_failed(first, "gone", None)
    assert fax.find(*ANNA, first).delivery == "failed"
    assert [f.id for f in fax.received(*ANNA)] == [empty, first]


# ---------------------------------------------------------------------------- conversion

@pytest.mark.parametrize("fine", [False, True])
def test_tiff_to_pdf_keeps_pages_and_proportions(tmp_path: Path, fine: bool) -> None:
    data, pages = tiff_to_pdf(fax_tiff(tmp_path / "f.tif", 3, fine=fine))
    assert pages == 3 and data.startswith(b"%PDF")
    # Page size in points: 1728 dots at 204 dpi is 8.47 in wide; the height is what the lines
    # measure at the vertical resolution (98 or 196 lines per inch), not squashed.
    media = data.split(b"/MediaBox")[1].split(b"]")[0]
    width, height = (float(v) for v in media.strip(b" [").split()[2:4])
    assert width == pytest.approx(1728 / 204 * 72, rel=0.01)
    assert height == pytest.approx((1100 / 196 if fine else 550 / 98) * 72, rel=0.01)


def test_not_a_tiff(tmp_path: Path) -> None:
    (tmp_path / "x.tif").write_bytes(b"not an image")
    with pytest.raises(ConversionError):
        tiff_to_pdf(tmp_path / "x.tif")
    with pytest.raises(ConversionError):
        tiff_to_pdf(tmp_path / "missing.tif")


# ---------------------------------------------------------------------------- delivery

class FakeMessenger:
    def __init__(self, fail: DeliveryError | None = None) -> None:
        self.sent: list[tuple[str, str, tuple]] = []
        self.fail = fail

    async def email(self, to: str, subject: str, body: str, attachments: tuple = ()) -> None:
        if self.fail:
            raise self.fail
        self.sent.append((to, subject, attachments))


async def test_delivery_converts_and_emails(tmp_path: Path) -> None:
    site = make_harness(tmp_path)
    paths = Paths(tmp_path)
    paths.fax.mkdir(parents=True)
    fax_tiff(paths.fax / "1733.1.tif", 2)
    site.state.fax.set_settings(*ANNA, enabled=True, email="faxes@acme.example", actor="t", source="web")
    fax_id = record(site.state)
    messenger = FakeMessenger()
    service = FaxService(site.state, messenger, paths.fax)  # type: ignore[arg-type]
    assert await service.run_once() == 1
    (to, subject, (attachment,)), = messenger.sent
    assert to == "faxes@acme.example" and "+358401111111" in subject
    assert attachment.subtype == "pdf" and attachment.data == paths.fax_pdf(*ANNA, fax_id).read_bytes()
    assert not (paths.fax / "1733.1.tif").exists()
    assert site.state.fax.find(*ANNA, fax_id).delivery == "sent"
    assert await service.run_once() == 0


async def test_delivery_failure_is_retried_then_given_up(tmp_path: Path) -> None:
    site = make_harness(tmp_path)
    paths = Paths(tmp_path)
    paths.fax.mkdir(parents=True)
    fax_tiff(paths.fax / "1733.1.tif", 1)
    site.state.fax.set_settings(*ANNA, enabled=True, email=None, actor="t", source="web")
    fax_id = record(site.state)
    service = FaxService(site.state, FakeMessenger(DeliveryError("421 busy")), paths.fax)  # type: ignore[arg-type]
    await service.run_once()
    row = site.state.fax.find(*ANNA, fax_id)
    assert (row.delivery, row.attempts, row.delivery_error) == ("pending", 1, "421 busy")
    assert paths.fax_pdf(*ANNA, fax_id).exists()  # the page has it already
    service.messenger = FakeMessenger(DeliveryError("550 no such user", permanent=True))  # type: ignore[assignment]
    site.state.fax.delivery_failed(fax_id, "again", timedelta(0))
    await service.run_once()
    assert site.state.fax.find(*ANNA, fax_id).delivery == "failed"


# ---------------------------------------------------------------------------- FastAGI

class FakeRequest:
    def __init__(self, args: list[str]) -> None:
        self.headers = {f"agi_arg_{n + 1}": a for n, a in enumerate(args)}  # the key already taken out
        self.commands: list[str] = []

    async def send_command(self, command: str) -> dict:
        self.commands.append(command)
        return {"status_code": 200, "result": ("1", "")}


async def test_agi_fax_records_and_route_tells_fax(tmp_path: Path) -> None:
    site = make_harness(tmp_path)
    app = AgiApplication(site.config, site.state, key="key")
    await app.fax(FakeRequest(["acme", "anna.virtanen", "1733.5", "SUCCESS", "2", "+358401", "ACME", ""]))
    await app.fax(FakeRequest(["acme", "nobody", "1733.6", "SUCCESS", "2", "+358401", "", ""]))
    await app.fax(FakeRequest(["acme", "anna.virtanen", "../../etc/passwd", "SUCCESS", "2", "", "", ""]))
    (row,) = site.state.fax.received(*ANNA)
    assert (row.tiff, row.pages, row.status, row.caller) == ("1733.5.tif", 2, "received", "+358401")
    request = FakeRequest(["acme", "anna.virtanen", "", "", ""])
    await app.route(request)
    assert not any("VIPBX_FAX" in c for c in request.commands)
    site.state.fax.set_settings(*ANNA, enabled=True, email=None, actor="t", source="web")
    request = FakeRequest(["acme", "anna.virtanen", "", "", ""])
    await app.route(request)
    assert any("VIPBX_FAX" in c for c in request.commands)


# ---------------------------------------------------------------------------- page and API

async def test_page_toggles_and_lists(tmp_path: Path) -> None:
    site = make_harness(tmp_path)
    anna = site.who(*ANNA)
    fax_id = record(site.state)
    Paths(tmp_path).fax_pdf(*ANNA, fax_id).parent.mkdir(parents=True)
    Paths(tmp_path).fax_pdf(*ANNA, fax_id).write_bytes(b"%PDF-1.4 test")
    async with site.client() as c:
        csrf = await site.login(c, anna)
        page = await c.get("/services/fax")
        assert page.status_code == 200 and f'id="fax-{fax_id}"' in page.text and "+358401111111" in page.text
        r = await site.post_form(c, "/services/fax", csrf, enabled="1", email="")
        assert r.status_code == 303 and r.headers["location"] == "/services/fax?done=fax_saved"
        assert site.state.fax.settings(*ANNA).enabled
        r = await site.post_form(c, "/services/fax", csrf, enabled="1", email="not an address")
        assert r.status_code == 422 and "role=\"alert\"" in r.text
        assert site.state.fax.settings(*ANNA).email == "anna.virtanen@acme.example"
        pdf = await c.get(f"/services/fax/{fax_id}.pdf")
        assert pdf.status_code == 200 and pdf.content == b"%PDF-1.4 test"
        api = await c.get("/api/v1/fax/received")
        assert api.json()[0]["id"] == fax_id and api.json()[0]["pdf"]
        r = await c.put("/api/v1/fax/settings", json={"enabled": False, "email": "f@acme.example"},
                        headers={"x-csrf-token": csrf})
        assert r.status_code == 200 and r.json() == {"enabled": False, "email": "f@acme.example", "own_email": True}
        r = await c.put("/api/v1/fax/settings", json={"enabled": True, "email": "bad"}, headers={"x-csrf-token": csrf})
        assert r.status_code == 422
        r = await site.post_form(c, f"/services/fax/{fax_id}/delete", csrf)
        assert r.status_code == 303 and site.state.fax.received(*ANNA) == []
        assert not Paths(tmp_path).fax_pdf(*ANNA, fax_id).exists()


def _routes(fax_id: int) -> list[tuple[str, str, dict]]:
    return [("GET", f"/services/fax/{fax_id}.pdf", {}), ("POST", f"/services/fax/{fax_id}/delete", {}),
            ("GET", f"/api/v1/fax/received/{fax_id}.pdf", {}), ("DELETE", f"/api/v1/fax/received/{fax_id}", {})]


@pytest.mark.parametrize("other", [MIKKO, JAMES])
async def test_another_users_fax_is_not_found_and_unchanged(tmp_path: Path, other: tuple[str, str]) -> None:
    site = make_harness(tmp_path)
    fax_id = record(site.state)
    pdf = Paths(tmp_path).fax_pdf(*ANNA, fax_id)
    pdf.parent.mkdir(parents=True)
    pdf.write_bytes(b"%PDF anna's")
    async with site.client() as c:
        csrf = await site.login(c, site.who(*other))
        for method, path, _ in _routes(fax_id):
            r = await c.request(method, path, data={"csrf_token": csrf} if method == "POST" else None,
                                headers={"x-csrf-token": csrf})
            assert r.status_code == 404, (method, path)
        for method, path, _ in [*_routes(2 ** 64), *_routes(-1), *_routes(0)]:  # no row has such an id
            r = await c.request(method, path, data={"csrf_token": csrf} if method == "POST" else None,
                                headers={"x-csrf-token": csrf})
            assert r.status_code == 404, (method, path)
        assert (await c.get("/api/v1/fax/received")).json() == []
        assert "anna" not in (await c.get("/services/fax")).text.lower().split("fax-list")[-1]
        await c.put("/api/v1/fax/settings", json={"enabled": True}, headers={"x-csrf-token": csrf})
    assert site.state.fax.find(*ANNA, fax_id) is not None and pdf.exists()
    assert not site.state.fax.settings(*ANNA).enabled
    assert site.state.fax.settings(*other).enabled


async def test_anonymous_is_refused_everywhere(tmp_path: Path) -> None:
    site = make_harness(tmp_path)
    fax_id = record(site.state)
    async with site.client() as c:
        for method, path, _ in [*_routes(fax_id), ("GET", "/services/fax", {}), ("POST", "/services/fax", {}),
                                ("GET", "/api/v1/fax/settings", {}), ("PUT", "/api/v1/fax/settings", {}),
                                ("GET", "/api/v1/fax/received", {})]:
            r = await c.request(method, path)
            assert r.status_code in (303, 401), (method, path, r.status_code)
            if path.startswith("/api/"):
                assert r.status_code == 401
    assert site.state.fax.find(*ANNA, fax_id) is not None


async def test_forms_need_csrf(tmp_path: Path) -> None:
    site = make_harness(tmp_path)
    async with site.client() as c:
        await site.login(c, site.who(*ANNA))
        r = await c.post("/services/fax", data={"enabled": "1"})
        assert r.status_code == 403
        r = await c.put("/api/v1/fax/settings", json={"enabled": True})
        assert r.status_code == 403
    assert not site.state.fax.settings(*ANNA).enabled


# ---------------------------------------------------------------------------- Asterisk configuration

def test_dialplan_listens_for_fax_only_when_told_and_loads_res_fax(tmp_path: Path) -> None:
    from asterisk_conf.render import render_config
    from base.secrets import SecretStore

    files = render_config(make_harness(tmp_path).config, SecretStore(tmp_path / "secrets.json"))
    modules, dialplan = files["modules.conf"], files["extensions.conf"]
    assert "load => res_fax.so" in modules and "load => res_fax_spandsp.so" in modules
    assert 'GotoIf($["${VIPBX_FAX}" = "1"]?fax-listen)' in dialplan
    assert "Set(FAXOPT(faxdetect)=cng)" in dialplan and "Set(FAXOPT(faxdetect)=no)" in dialplan
    assert "exten => fax,1,Goto(vipbx-fax,s,1)" in dialplan
    assert "ReceiveFax(${ASTSPOOLDIR}/fax/${UNIQUEID}.tif)" in dialplan
    assert "/fax," in dialplan.split("[vipbx-fax]")[1]  # the FastAGI script is told when the call ends
