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


def test_the_access_fallback_checks_the_pin_and_the_lock_before_the_mailbox(
        config: Config, secrets: SecretStore) -> None:
    """VoiceMailMain is reached only after the fallback's own login, which honours the locks."""
    dialplan = sections(render_config(config, secrets)["extensions.conf"], "extensions.conf")
    lines = [v for k, v, _ in dialplan["vipbx-vm-access-fallback"][0].settings if k in ("exten", "same")]
    users = [(t, u) for t in config.tenants for u in t.users if u.has_voicemail]
    logins = [v for v in lines if "Gosub(vipbx-vm-fallback-login" in v]
    assert len(logins) == len(users)
    for tenant, user in users:
        assert any(f"1({tenant.id}+{user.id},{user.number[1:]}@{tenant.id})" in v for v in logins)
    mains = [v for v in lines if "VoiceMailMain(" in v]
    assert len(mains) == len(users) and all(v.endswith(",s)") for v in mains)  # the PIN was checked
    login = " ".join(v for k, v, _ in dialplan["vipbx-vm-fallback-login"][0].settings)
    assert "DB_EXISTS(vipbx-pinlock/${ARG1})" in login and "Set(DB(vipbx-pinfail/${ARG1})=" in login
    assert login.index("?locked") < login.index("Read(")  # a lock refuses before any PIN prompt
