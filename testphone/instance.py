"""The test phone's Asterisk instance: its files, its process and a connected driver.

Layout under its home (`VIPBX_HOME/phone` for `vipbx phone`, a temporary folder in tests):
    etc/         the rendered configuration (its astetcdir)
    phone.json   the settings and device list it was configured with, for later commands
    sounds/      audio the driver generates to speak into calls
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from asterisk_host import AsteriskInstance, AsteriskRuntime
from base.model import Config
from base.secrets import SecretStore
from testphone.config import ARI_SECRET, PhoneSettings, device_ids, render_phone_config
from testphone.driver import TestPhone, parse_registrations


class PhoneInstance:
    def __init__(self, runtime: AsteriskRuntime, home: Path, secrets: SecretStore) -> None:
        self.home = Path(home).absolute()
        self.secrets = secrets
        # The driver writes the audio it speaks into `sounds/` (as root): Asterisk must read it.
        self.asterisk = AsteriskInstance(runtime, self.home, self.home / "etc", name="testphone",
                                         shared=[self.home / "sounds"])

    @property
    def etc_dir(self) -> Path:
        return self.home / "etc"

    @property
    def sounds_dir(self) -> Path:
        return self.home / "sounds"

    @property
    def _state_path(self) -> Path:
        return self.home / "phone.json"

    def configure(self, config: Config, settings: PhoneSettings) -> None:
        """Write the phone's files for `config` (takes effect at the next start)."""
        files = render_phone_config(config, self.secrets, settings, self.secrets.get(ARI_SECRET))
        if self.etc_dir.exists():
            shutil.rmtree(self.etc_dir)  # a device removed from the YAML must not linger
        self.etc_dir.mkdir(parents=True)
        for name, text in files.items():
            (self.etc_dir / name).write_text(text, encoding="utf-8")
        state = {"settings": asdict(settings), "devices": device_ids(config)}
        self._state_path.write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")

    @property
    def configured(self) -> bool:
        return self._state_path.exists()

    def _state(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads(self._state_path.read_text(encoding="utf-8"))
            return state
        except FileNotFoundError:
            raise RuntimeError(f"the test phone in {self.home} is not configured yet "
                               "(vipbx phone start FILES)") from None

    @property
    def settings(self) -> PhoneSettings:
        return PhoneSettings.from_dict(self._state()["settings"])

    @property
    def devices(self) -> list[str]:
        return [str(device) for device in self._state()["devices"]]

    def start(self, timeout: float = 60) -> int:
        self.sounds_dir.mkdir(parents=True, exist_ok=True)
        return self.asterisk.start(timeout)

    def stop(self) -> None:
        self.asterisk.stop()

    def registrations(self) -> dict[str, str]:
        """Device id → registration status at the PBX, as the phone sees it."""
        return parse_registrations(self.asterisk.cli("pjsip show registrations"))

    def wait_registered(self, devices: list[str] | None = None, timeout: float = 30) -> dict[str, str]:
        """Wait until every device (default: all) is registered; returns the last statuses."""
        wanted = self.devices if devices is None else devices
        deadline = time.monotonic() + timeout
        while True:
            state = self.registrations()
            if all(state.get(d) == "Registered" for d in wanted) or time.monotonic() > deadline:
                return state
            time.sleep(0.2)

    @asynccontextmanager
    async def connect(self, timeout: float = 15) -> AsyncIterator[TestPhone]:
        """A TestPhone driving this instance over its ARI."""
        async with TestPhone.connect(self.settings, self.secrets.get(ARI_SECRET),
                                     cli=self.asterisk.cli, sounds_dir=self.sounds_dir,
                                     timeout=timeout) as phone:
            yield phone
