"""The session's PBX, rendered from examples/*.yaml, loaded what the YAML says and nothing else.

Every expectation is derived from the validated model (`e2e_config`), never from the rendered
files, so a renderer that drops, adds or mixes up a device, an extension or a mailbox fails here.
The PBX's `messages` log must hold no ERROR line after start-up, and none at the end of the whole
session either (a session-scoped finaliser reads it again after every other test has run).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from base.model import Config

pytestmark = pytest.mark.asterisk


def error_lines(pbx: Any) -> list[str]:
    """ERROR lines of the PBX's messages log (logger.conf: notice, warning, error)."""
    text = pbx.instance.log_path.read_text(encoding="utf-8", errors="replace")
    return [line for line in text.splitlines() if re.search(r"\bERROR\[", line)]


@pytest.fixture(scope="session", autouse=True)
def no_errors_at_session_end(pbx: Any) -> Iterator[None]:
    """After the last test of the session (before the PBX stops): still no ERROR in its log."""
    yield
    errors = error_lines(pbx)
    assert not errors, "the PBX logged errors during the session:\n" + "\n".join(errors)


def users(config: Config) -> list[tuple[str, Any]]:
    return [(tenant.id, user) for tenant in config.tenants for user in tenant.users]


def show_endpoints(pbx: Any) -> dict[str, str]:
    """`pjsip show endpoints` → endpoint name → its caller id ('' when none is shown)."""
    found: dict[str, str] = {}
    for match in re.finditer(r"^\s*Endpoint:\s+([^\s/<]+)(?:/(\S+))?", pbx.cli("pjsip show endpoints"),
                             re.MULTILINE):
        found[match.group(1)] = match.group(2) or ""
    return found


# `'101' => [hint: ... newline] 1. Gosub(...)`: in a tenant's context the hint is listed first.
GOSUB = re.compile(r"^\s*'([^']+)'\s+=>\s+(?:hint:[^\n]*\n\s+)?1\.\s+Gosub\(vipbx-call-user,s,1\(([^)]*)\)\)",
                   re.MULTILINE)


def user_routes(pbx: Any, context: str) -> dict[str, tuple[str, ...]]:
    """Extensions of `context` that call a user → the arguments of that call."""
    text = pbx.cli(f"dialplan show {context}")
    assert f"Context '{context}'" in text, text
    # `dialplan show CONTEXT` also lists included contexts: keep only this context's block.
    own = text.split("[ Context '", 2)[1]
    return {m.group(1): tuple(m.group(2).split(",")) for m in GOSUB.finditer(own)}


def expected_route(tenant_id: str, user: Any) -> tuple[str, ...]:
    dial = "&".join(f"PJSIP/{device.id}" for device in user.devices)
    return (tenant_id, user.id, dial, "1" if user.has_voicemail else "0", user.number.lstrip("+"),
            user.extension)


def test_endpoints_are_exactly_the_devices_and_the_carrier(pbx: Any, e2e_config: Config) -> None:
    endpoints = show_endpoints(pbx)
    expected = {device.id: user.number for _, user in users(e2e_config) for device in user.devices}
    assert set(endpoints) == set(expected) | {"carrier"}
    # Each device presents its own user's number: no device is wired to a colleague.
    assert {d: cid for d, cid in endpoints.items() if d != "carrier"} == expected
    # A user with no devices (Borealis's Erik) has no endpoint of any name.
    assert not any("erik" in name for name in endpoints)


def test_each_device_lands_in_its_own_tenants_context(pbx: Any, e2e_config: Config) -> None:
    for tenant_id, user in users(e2e_config):
        for device in user.devices:
            text = pbx.cli(f"pjsip show endpoint {device.id}")
            options = dict(re.findall(r"^\s*(context|subscribe_context)\s*:\s*(\S+)", text,
                                      re.MULTILINE))
            expected = f"vipbx-t-{tenant_id}"
            assert options == {"context": expected, "subscribe_context": expected}, (device.id, options)


def test_carrier_is_identified_by_its_address_only(pbx: Any, e2e_config: Config) -> None:
    carrier = e2e_config.platform.carrier
    assert carrier is not None
    text = pbx.cli("pjsip show endpoint carrier")
    assert "vipbx-from-carrier" in text
    matches = set(re.findall(r"^\s*Match:\s+([^\s<]\S*)", text, re.MULTILINE))
    assert matches == {f"{ip}/32" for ip in carrier.match}


@pytest.mark.parametrize("tenant_id", ["acme", "borealis"])
def test_each_tenant_context_has_exactly_its_own_extensions(pbx: Any, e2e_config: Config,
                                                            tenant_id: str) -> None:
    assert tenant_id in {t.id for t in e2e_config.tenants}
    routes = user_routes(pbx, f"vipbx-t-{tenant_id}")
    expected = {user.extension: expected_route(t, user)
                for t, user in users(e2e_config) if t == tenant_id}
    assert routes == expected


def test_public_numbers_reach_their_users(pbx: Any, e2e_config: Config) -> None:
    routes = user_routes(pbx, "vipbx-public")
    expected = {user.number: expected_route(t, user) for t, user in users(e2e_config)}
    for tenant in e2e_config.tenants:
        for extra in tenant.numbers:
            expected[extra.number] = expected_route(tenant.id, tenant.user(extra.user))
    assert routes == expected
    assert "+358923130000" in routes and routes["+358923130000"][1] == "anna.virtanen"


def test_carrier_context_has_no_internal_extension(pbx: Any, e2e_config: Config) -> None:
    for extension in sorted({user.extension for _, user in users(e2e_config)}):
        out = pbx.cli(f"dialplan show {extension}@vipbx-from-carrier")
        assert "There is no existence" in out, out


def test_voicemail_users_are_exactly_those_with_voicemail(pbx: Any, e2e_config: Config) -> None:
    text = pbx.cli("voicemail show users")
    listed = set(re.findall(r"^(\S+)\s+(\d+)\s", text, re.MULTILINE))
    expected = {(t, user.number.lstrip("+")) for t, user in users(e2e_config) if user.has_voicemail}
    assert listed == expected
    assert f"{len(expected)} voicemail users configured." in text
    # The "No voicemail" user exists but has no mailbox.
    workshop = e2e_config.tenants[0].user("workshop")
    assert not workshop.has_voicemail
    assert workshop.number.lstrip("+") not in text


def test_no_error_in_the_log_after_start(pbx: Any) -> None:
    log = pbx.instance.log_path.read_text(encoding="utf-8", errors="replace")
    assert "modules will be loaded" in log  # the log we read is the live one
    assert not error_lines(pbx), "\n".join(error_lines(pbx))
