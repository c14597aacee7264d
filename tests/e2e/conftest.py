"""End-to-end fixtures: a real PBX rendered from the example tenants, and the test phone.

Session-scoped: `asterisk_runtime`, `e2e_config`, `pbx`, `phone_instance` (the Asterisk processes
start once). Per test: `phone`, a fresh TestPhone connected to the phone instance, so no test
inherits another's calls.

Addresses are unusual on purpose, so a `deploy.sh` instance on the same machine never clashes:
the PBX on 127.0.0.12 (ports 15xxx), the phones on 127.0.0.13 and the carrier on 127.0.0.14
(ports 16xxx). A module that needs a PBX of its own gets one from `make_pbx`/`make_phone` on
other addresses (see test_testphone.py); every instance is stopped by pid at the end.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

import pytest
import pytest_asyncio

from asterisk_conf import confcheck
from asterisk_conf.deploy import Generations
from asterisk_conf.render import render_config
from asterisk_conf.validate import load_config
from asterisk_host import AsteriskInstance, AsteriskRuntime
from base.model import Carrier, Config, Listener, Platform
from base.paths import Paths
from base.secrets import SecretStore
from testphone import PhoneInstance, PhoneSettings, TestPhone

PBX_IP = "127.0.0.12"
PHONES_IP = "127.0.0.13"
CARRIER_IP = "127.0.0.14"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_FILES = [EXAMPLES / "platform.yaml", EXAMPLES / "acme.yaml", EXAMPLES / "borealis.yaml"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything here needs a real Asterisk: `-m "not asterisk"` leaves it all out.
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.asterisk)


def unavailable(reason: str) -> NoReturn:
    """Skip for want of what these tests need (root, Asterisk, a server program), except under CI
    (CI=true), where `deploy.sh test` provides it and a skip would hide that it did not: fail."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; under CI this is an error, not a skip")
    pytest.skip(reason)


def on_test_addresses(platform: Platform, pbx_ip: str = PBX_IP, carrier_ip: str = CARRIER_IP,
                  rtp: tuple[int, int] = (15100, 15599), carrier_port: int = 16060) -> Platform:
    """`platform` moved onto test addresses: every listener on `pbx_ip`, the carrier (the
    outbound trunk) elsewhere; other trunks stay as they are."""
    carrier = platform.carrier or Carrier(host=carrier_ip)
    moved = replace(carrier, host=carrier_ip, port=carrier_port, match=(carrier_ip,))
    trunks = tuple(moved if t.name == carrier.name else t for t in platform.trunks) or (moved,)
    return replace(
        platform,
        sip=Listener(pbx_ip, 15060), http=Listener(pbx_ip, 15088), ami=Listener(pbx_ip, 15038),
        agi=Listener(pbx_ip, 15073), rtp_start=rtp[0], rtp_end=rtp[1], trunks=trunks,
        # Plain HTTP in tests: the browser would not send a Secure cookie back.
        web=replace(platform.web, listener=Listener(pbx_ip, 15090), secure_cookies=False),
    )


@dataclass
class Pbx:
    """A running PBX and what it was made from. `home` is laid out like VIPBX_HOME."""

    instance: AsteriskInstance
    config: Config
    secrets: SecretStore
    home: Path

    def cli(self, command: str) -> str:
        return self.instance.cli(command)


Renderer = Callable[[Config, SecretStore], dict[str, str]]


def start_pbx(runtime: AsteriskRuntime, home: Path, config: Config,
              render: Renderer = render_config, *, check: bool = True) -> Pbx:
    """Deploy what `render` makes of `config` (default: the product's files), start a PBX on it."""
    secrets = SecretStore(home / "secrets.json")
    files = render(config, secrets)
    if check:
        problems = confcheck.check(files)
        assert not problems, "rendered configuration fails its check:\n" + "\n".join(problems)
    generations = Generations(Paths(home))
    generations.point(generations.current, generations.stage(files))
    # The prompt catalogue (`home/sounds`, see `prompt_catalogue`) is mounted where the app names it.
    instance = AsteriskInstance(runtime, home / "pbx", generations.current, name="pbx",
                                shared=[home / "sounds"])
    instance.start()
    return Pbx(instance, config, secrets, home)


def start_phone(runtime: AsteriskRuntime, pbx: Pbx, phones_ip: str = PHONES_IP, *,
                sip_port: int = 16060, http_port: int = 16088,
                rtp: tuple[int, int] = (16100, 16499), register_timeout: float = 30) -> PhoneInstance:
    """Start a test phone for the PBX's users and carrier; returns once every device registered."""
    settings = PhoneSettings.for_config(pbx.config, phones_ip, sip_port=sip_port,
                                        http_port=http_port, rtp_start=rtp[0], rtp_end=rtp[1])
    phone = PhoneInstance(runtime, pbx.home / "phone", pbx.secrets)
    phone.configure(pbx.config, settings)
    phone.start()
    state = phone.wait_registered(timeout=register_timeout)
    missing = {d: state.get(d, "absent") for d in phone.devices if state.get(d) != "Registered"}
    if missing:
        phone.stop()
        raise AssertionError(f"devices did not register with the PBX: {missing}\n"
                             + pbx.instance.log_tail())
    return phone


@pytest.fixture(scope="session")
def asterisk_runtime() -> AsteriskRuntime:
    if os.geteuid() != 0:
        unavailable("end-to-end tests run Asterisk in a chroot: they need root")
    # Builds the rootfs on first use (about a minute); a failure here is a real error.
    return AsteriskRuntime.locate()


@pytest.fixture(scope="session")
def e2e_config() -> Config:
    """The example tenants on the test platform addresses."""
    config = load_config([str(p) for p in EXAMPLE_FILES])
    return replace(config, platform=on_test_addresses(config.platform))


@pytest.fixture(scope="session")
def make_pbx(asterisk_runtime: AsteriskRuntime, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Callable[..., Pbx]]:
    """`make_pbx(config, render=render_config)`: a started PBX in a fresh home (`start_pbx`)."""
    started: list[Pbx] = []

    def make(config: Config, *args: Any, **kwargs: Any) -> Pbx:
        home = tmp_path_factory.mktemp("vipbx-home")
        started.append(start_pbx(asterisk_runtime, home, config, *args, **kwargs))
        return started[-1]

    yield make
    for each in started:
        each.instance.stop()


@pytest.fixture(scope="session")
def make_phone(asterisk_runtime: AsteriskRuntime) -> Iterator[Callable[..., PhoneInstance]]:
    """`make_phone(pbx, phones_ip=..., ...)`: a started, registered phone (see `start_phone`)."""
    started: list[PhoneInstance] = []

    def make(pbx: Pbx, *args: Any, **kwargs: Any) -> PhoneInstance:
        started.append(start_phone(asterisk_runtime, pbx, *args, **kwargs))
        return started[-1]

    yield make
    for each in started:
        each.stop()


@pytest.fixture(scope="session")
def pbx(make_pbx: Callable[..., Pbx], e2e_config: Config) -> Pbx:
    """The product: the example tenants rendered by the real renderer, running."""
    return make_pbx(e2e_config)


@pytest.fixture(scope="session")
def prompt_catalogue(pbx: Pbx) -> Path:
    """The voicemail prompt catalogue, built once (espeak-ng + sox, a few seconds) into
    `<pbx.home>/sounds`: where the app's `base.paths.Paths` looks and the PBX sees it (bind mount)."""
    from prompts.build import build

    sounds = pbx.home / "sounds"
    build(sounds)
    return sounds


@pytest.fixture(scope="session")
def phone_instance(make_phone: Callable[..., PhoneInstance], pbx: Pbx) -> PhoneInstance:
    """Every example device registered with `pbx`, and its carrier."""
    return make_phone(pbx)


@pytest_asyncio.fixture
async def phone(phone_instance: PhoneInstance) -> AsyncIterator[TestPhone]:
    """A TestPhone on the session's phone instance; its calls are hung up after the test."""
    async with phone_instance.connect() as connected:
        yield connected


@pytest.fixture(scope="module")
def no_pbx_errors(pbx: Pbx) -> Iterator[None]:
    """Fails the module if the PBX logged an ERROR line while its tests ran (e.g. a dialplan
    function that is not loaded: the call may still go on, wrongly)."""
    def errors() -> list[str]:
        text = pbx.instance.log_path.read_text(encoding="utf-8", errors="replace")
        return [line for line in text.splitlines() if "ERROR[" in line]

    before = errors()
    yield
    new = errors()[len(before):]
    assert not new, "the PBX logged errors during these calls:\n" + "\n".join(new)
