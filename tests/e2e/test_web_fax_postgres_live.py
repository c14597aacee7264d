"""The fax state (settings, received faxes, the e-mail queue) on a real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pgserver import PgServices

from asterisk_conf.validate import load_config

pytest_plugins = ("pgserver",)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ANNA = ("acme", "anna.virtanen")


def test_fax_state_on_postgresql(pg_services: PgServices) -> None:
    config = load_config([str(EXAMPLES / name) for name in ("platform.yaml", "acme.yaml", "borealis.yaml")])
    fax = pg_services.make(config).fax
    assert not fax.enabled(*ANNA)
    fax.set_settings(*ANNA, enabled=True, email="faxes@acme.example", actor="t", source="web")
    assert fax.enabled(*ANNA) and fax.settings(*ANNA).email == "faxes@acme.example"
    first = fax.record(*ANNA, caller="+358401", remote_id="X", pages=2, ok=True, error="", tiff="1.2.tif")
    second = fax.record(*ANNA, caller="+358402", remote_id="", pages=0, ok=False, error="no tone", tiff="1.3.tif")
    assert second > first
    assert [f.id for f in fax.due()] == [first]
    fax.delivery_failed(first, "busy", timedelta(minutes=1))
    assert fax.due() == []
    fax.delivered(first)
    got = fax.find(*ANNA, first)
    assert got is not None and (got.delivery, got.attempts, got.pages) == ("sent", 2, 2)
    assert fax.find("acme", "mikko.korhonen", first) is None
    assert [f.id for f in fax.received(*ANNA)] == [second, first]
    assert fax.delete(*ANNA, second, actor="t", source="web") is not None
    assert [f.id for f in fax.received(*ANNA)] == [first]
