"""No value of secrets.json reaches the log, at any verbosity: the SMS gateway's URL (which carries
its password), exceptions, and whatever the command line logs on a realistic run."""

from __future__ import annotations

import io
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from base import logsetup
from base.secrets import SecretStore
from cli.main import main
from notify.sms import KannelGateway, KannelSettings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def secrets(tmp_path: Path) -> SecretStore:
    store = SecretStore(tmp_path / "secrets.json")
    store.ensure(["kannel", "smtp", "postgresql", "ari", "ami", "agi"])
    return store


@pytest.fixture
def captured(secrets: SecretStore) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logsetup.configure(True, secrets.values, stream)
    yield stream
    logging.getLogger().removeHandler(handler)


def assert_no_secret(text: str, secrets: SecretStore) -> None:
    leaked = [value for value in secrets.values() if value in text]
    assert not leaked, text


async def test_the_sms_url_with_its_password_is_masked_at_debug(
        secrets: SecretStore, captured: io.StringIO) -> None:
    password = secrets.get("kannel")
    seen: list[str] = []

    def kannel(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(202, text="0: Accepted for delivery")

    gateway = KannelGateway(KannelSettings("http://127.0.0.1:13013/cgi-bin/sendsms", "vipbx", password),
                            transport=httpx.MockTransport(kannel))
    await gateway.send("+358401110001", "New voicemail")
    await gateway.aclose()
    assert password in seen[0]  # the gateway does get it
    text = captured.getvalue()
    assert "HTTP Request: GET http://127.0.0.1:13013/cgi-bin/sendsms" in text  # -v shows the request
    assert f"password={logsetup.MASK}" in text
    assert_no_secret(text, secrets)


def test_exceptions_and_arguments_are_masked(secrets: SecretStore, captured: io.StringIO) -> None:
    log = logging.getLogger("vipbx.test")
    log.debug("connecting to %s", f"postgresql://vipbx:{secrets.get('postgresql')}@127.0.0.1/vipbx")
    try:
        raise RuntimeError(f"login refused for secret {secrets.get('ami')}")
    except RuntimeError:
        log.exception("AMI failed")
    log.info("plain %s", "words", stack_info=False)
    text = captured.getvalue()
    assert "AMI failed" in text and "login refused for secret ********" in text
    assert "plain words" in text
    assert_no_secret(text, secrets)


def test_secrets_made_after_the_logging_is_set_up_are_masked_too(
        secrets: SecretStore, captured: io.StringIO) -> None:
    late = secrets.get("device:late-phone")
    logging.getLogger("vipbx.test").warning("password is %s", late)
    assert late not in captured.getvalue()


def test_a_verbose_command_line_run_logs_no_secret(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """`vipbx -v` render, deploy (AMI unreachable: its error is logged and printed), diff and
    rollback, with every secret loaded: nothing of secrets.json in what the user sees."""
    home = tmp_path / "home"
    files = [str(tmp_path / name) for name in ("platform.yaml", "acme.yaml", "borealis.yaml")]
    for name in ("platform.yaml", "acme.yaml", "borealis.yaml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    runner = CliRunner()
    outputs = []
    for args in (["render", *files, "--out", str(tmp_path / "out")], ["deploy", *files],
                 ["diff", *files], ["rollback", *files]):
        result = runner.invoke(main, ["-v", "--home", str(home), *args], env={"VIPBX_CONFIG": None})
        outputs.append(result.output + (str(result.exception) if result.exception else ""))
    secrets = SecretStore(home / "secrets.json")
    assert len(secrets.values()) > 5  # ARI, AMI, AGI and the devices' passwords were made
    err = capfd.readouterr()
    assert_no_secret("\n".join(outputs) + err.out + err.err, secrets)
