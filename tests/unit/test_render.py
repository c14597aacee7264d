"""Rendering: deterministic, structurally sound, isolating tenants, and inert to hostile values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from asterisk_conf import confcheck
from asterisk_conf.conffilters import UnsafeValueError
from asterisk_conf.render import render_config
from asterisk_conf.validate import load_config
from base.model import Config
from base.secrets import SecretStore

EXAMPLES = sorted(str(p) for p in (Path(__file__).parents[2] / "examples").glob("*.yaml"))


@pytest.fixture()
def config() -> Config:
    return load_config(EXAMPLES)


@pytest.fixture()
def secrets(tmp_path: Path) -> SecretStore:
    return SecretStore(tmp_path / "secrets.json")


def sections(text: str, filename: str) -> dict[str, list[confcheck.Section]]:
    parsed, errors = confcheck.parse(text, filename)
    assert errors == []
    out: dict[str, list[confcheck.Section]] = {}
    for section in parsed:
        out.setdefault(section.name, []).append(section)
    return out


def test_render_is_deterministic_and_passes_the_check(config: Config, secrets: SecretStore) -> None:
    first = render_config(config, secrets)
    second = render_config(config, secrets)
    assert first == second
    assert confcheck.check(first) == []


def test_every_device_gets_endpoint_auth_and_aor_with_a_generated_password(config: Config, secrets: SecretStore) -> None:
    pjsip = sections(render_config(config, secrets)["pjsip.conf"], "pjsip.conf")
    devices = [(t, u, d) for t in config.tenants for u in t.users for d in u.devices]
    assert devices
    passwords = set()
    for tenant, user, device in devices:
        kinds = {s.get("type"): s for s in pjsip[device.id]}
        assert set(kinds) == {"endpoint", "auth", "aor"}
        assert kinds["endpoint"].get("context") == f"vipbx-t-{tenant.id}"
        assert kinds["auth"].get("username") == device.id
        password = kinds["auth"].get("password")
        assert password == secrets.get(f"device:{device.id}") and len(password) >= 20
        passwords.add(password)
    assert len(passwords) == len(devices)  # never a shared or default password


def test_no_voicemail_user_has_no_mailbox(config: Config, secrets: SecretStore) -> None:
    files = render_config(config, secrets)
    vm = sections(files["voicemail.conf"], "voicemail.conf")
    for tenant in config.tenants:
        boxes = {k for k, _, _ in vm[tenant.id][0].settings}
        for user in tenant.users:
            assert (user.number[1:] in boxes) == user.has_voicemail
    workshop = next(u for t in config.tenants for u in t.users if not u.has_voicemail)
    assert f"mailboxes={workshop.number[1:]}" not in files["pjsip.conf"]


def test_tenant_contexts_hold_only_their_own_extensions(config: Config, secrets: SecretStore) -> None:
    dialplan = sections(render_config(config, secrets)["extensions.conf"], "extensions.conf")
    for tenant in config.tenants:
        context = dialplan[f"vipbx-t-{tenant.id}"][0]
        gosubs = [v for k, v, _ in context.settings if k == "exten" and "vipbx-call-user" in v]
        assert len(gosubs) == len(tenant.users)
        assert all(f"1({tenant.id}," in g for g in gosubs)
        includes = [v for k, v, _ in context.settings if k == "include"]
        assert not any(i.startswith("vipbx-t-") for i in includes)


def test_listeners_and_secrets_come_from_config(config: Config, secrets: SecretStore) -> None:
    files = render_config(config, secrets)
    assert f"bindaddr={config.platform.http.bind}" in files["http.conf"]
    assert f"password={secrets.get('ari')}" in files["ari.conf"]
    assert f"secret={secrets.get('ami')}" in files["manager.conf"]
    assert "deny=0.0.0.0/0.0.0.0" in files["manager.conf"]


@pytest.mark.parametrize(
    "hostile",
    ["Evil\n[vipbx-public]", "x;comment", "${SHELL(id)}", "a,b", '"quoted"', "#include /etc/passwd", "x => y", "a|b"],
)
def test_second_lock_refuses_hostile_values_even_if_validation_were_bypassed(
    config: Config, secrets: SecretStore, hostile: str
) -> None:
    tenant = config.tenants[0]
    user = dataclasses.replace(tenant.users[0], name=hostile)
    tenant = dataclasses.replace(tenant, users=(user, *tenant.users[1:]))
    bad = dataclasses.replace(config, tenants=(tenant, *config.tenants[1:]))
    with pytest.raises(UnsafeValueError):
        render_config(bad, secrets)


def test_non_ascii_names_render_as_utf8(config: Config, secrets: SecretStore) -> None:
    files = render_config(config, secrets)
    assert "Aino Mäkinen" in files["pjsip.conf"]
    assert "Aino Mäkinen" in files["voicemail.conf"]
