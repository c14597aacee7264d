"""Real notification gateways on loopback for the end-to-end tests: an SMTP server's handler
(aiosmtpd keeps what it is given) and Kannel (bearerbox + smsbox, with Kannel's own `fakesmsc` as
the SMSC), from Debian's `kannel` and `kannel-extras` packages."""

from __future__ import annotations

import email
import email.policy
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import httpx

from notify import KannelSettings

SMTP_IP = "127.0.0.1"
KANNEL_IP = "127.0.0.21"  # away from the PBX's and test phone's addresses (conftest.py)


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: email.message.EmailMessage


@dataclass
class MailSink:
    """aiosmtpd handler: keeps what it is given; refuses recipients in `refuse` with 550."""

    received: list[Received] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"


def kannel_programs() -> dict[str, str] | None:
    """bearerbox, smsbox (package kannel) and fakesmsc (kannel-extras, outside PATH)."""
    found = {name: shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin") for name in ("bearerbox", "smsbox")}
    fakesmsc = shutil.which("fakesmsc")
    if fakesmsc is None and shutil.which("dpkg"):
        listing = subprocess.run(["dpkg", "-L", "kannel-extras"], check=False, capture_output=True,
                                 text=True).stdout
        fakesmsc = next((line for line in listing.splitlines() if line.endswith("/fakesmsc")), None)
    programs = {**found, "fakesmsc": fakesmsc}
    if any(path is None for path in programs.values()):
        return None
    return {name: str(path) for name, path in programs.items()}


class Kannel:
    """bearerbox + smsbox with one `fake` SMSC, and fakesmsc connected to it as the SMSC side."""

    def __init__(self, programs: dict[str, str], workdir: Path, host: str = KANNEL_IP,
                 password: str = "kannel-pass") -> None:
        self.programs, self.dir, self.host = programs, workdir, host
        workdir.mkdir(parents=True, exist_ok=True)
        self.admin, self.box, self.sendsms, self.smsc = (free_port(host) for _ in range(4))
        self.user, self.password, self.sender = "vipbx", password, "VIP"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.conf = workdir / "kannel.conf"
        self.conf.write_text(f"""\
group = core
admin-port = {self.admin}
admin-interface = {host}
admin-password = admin-pass
smsbox-port = {self.box}
smsbox-interface = {host}
box-allow-ip = "127.0.0.*"
log-file = "{workdir}/bearerbox.log"
log-level = 0

group = smsc
smsc = fake
smsc-id = fake
port = {self.smsc}
our-host = {host}
connect-allow-ip = "127.0.0.*"

group = smsbox
bearerbox-host = {host}
bearerbox-port = {self.box}
sendsms-port = {self.sendsms}
sendsms-interface = {host}
log-file = "{workdir}/smsbox.log"
log-level = 0

group = sendsms-user
username = {self.user}
password = {self.password}
""")

    @property
    def settings(self) -> KannelSettings:
        return KannelSettings(url=f"http://{self.host}:{self.sendsms}/cgi-bin/sendsms", username=self.user,
                              password=self.password, sender=self.sender, timeout=5.0)

    def _spawn(self, name: str, *args: str) -> None:
        with open(self.dir / f"{name}.out", "ab") as out:  # the child keeps its own copy of the fd
            self.procs.append(subprocess.Popen([self.programs[name], *args], stdout=out, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL, cwd=self.dir))

    def start(self) -> None:
        self._spawn("bearerbox", str(self.conf))
        self._until(lambda: "SMSC connections" in self._status(), "bearerbox")
        # -m 0: the SMSC side sends nothing itself; it prints what bearerbox delivers to it.
        self._spawn("fakesmsc", "-H", self.host, "-r", str(self.smsc), "-m", "0", "1 2 text unused")
        self._spawn("smsbox", str(self.conf))
        self._until(lambda: "smsbox:" in (s := self._status()) and "(online" in s, "smsbox and the SMSC online")
        self._until(self._sendsms_listens, "smsbox's sendsms port")

    def stop(self) -> None:
        for proc in reversed(self.procs):  # smsbox, fakesmsc, bearerbox
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def delivered(self) -> list[tuple[str, str, str]]:
        """(sender, receiver, text) of every SMS that reached the SMSC side."""
        path = self.dir / "fakesmsc.out"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        found = []
        for line in lines:
            if "Got message" not in line:
                continue
            sender, receiver, kind, data = line.split(": <", 1)[1].rstrip(">").split(" ", 3)
            if kind == "ucs-2":  # url-encoded UTF-16BE, spaces as '+'
                data = unquote_to_bytes(data.replace("+", " ")).decode("utf-16-be")
            found.append((sender, receiver, data))
        return found

    def _status(self) -> str:
        try:
            return httpx.get(f"http://{self.host}:{self.admin}/status.txt",
                             params={"password": "admin-pass"}, timeout=1).text
        except httpx.HTTPError:
            return ""

    def _sendsms_listens(self) -> bool:
        try:
            socket.create_connection((self.host, self.sendsms), timeout=1).close()
            return True
        except OSError:
            return False

    def _until(self, ready: Any, what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args!r} exited ({proc.returncode}); see {self.dir}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kannel: timed out waiting for {what}; see {self.dir}")
            time.sleep(0.1)
