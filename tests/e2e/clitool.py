"""Run `vipbx` as operators do (a subprocess per command) against a home of a test's own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[2]
EXAMPLES = REPO / "examples"


def write_yaml(folder: Path, ip: str, carrier_ip: str, port_base: int) -> list[Path]:
    """platform.yaml on `ip` (listeners at port_base + 60/88/38/73/90/87) plus the example tenants."""
    (folder / "platform.yaml").write_text(
        "platform:\n"
        f"  sip: {{bind: {ip}, port: {port_base + 60}}}\n"
        f"  rtp: {{start: {port_base + 100}, end: {port_base + 199}}}\n"
        f"  http: {{bind: {ip}, port: {port_base + 88}}}\n"
        f"  ami: {{bind: {ip}, port: {port_base + 38}}}\n"
        f"  agi: {{bind: {ip}, port: {port_base + 73}}}\n"
        f"  web: {{bind: {ip}, port: {port_base + 90}, secure_cookies: false}}\n"
        f"  metrics: {{bind: {ip}, port: {port_base + 87}}}\n"
        f"  carrier: {{host: {carrier_ip}, port: {port_base + 70}, match: [{carrier_ip}]}}\n"
    )
    for name in ("acme.yaml", "borealis.yaml"):
        (folder / name).write_text((EXAMPLES / name).read_text(encoding="utf-8"), encoding="utf-8")
    return [folder / name for name in ("platform.yaml", "acme.yaml", "borealis.yaml")]


class Vipbx:
    def __init__(self, home: Path) -> None:
        self.home = home

    def env(self) -> dict[str, str]:
        env = {**os.environ, "VIPBX_HOME": str(self.home)}
        env.pop("VIPBX_CONFIG", None)
        return env

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "cli.main", *args]

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.argv(*args), env=self.env(), capture_output=True, text=True, timeout=120, cwd=REPO)
        if check and done.returncode != 0:
            raise AssertionError(f"vipbx {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def cli(self, command: str) -> str:
        return self("asterisk", "cli", command).stdout
