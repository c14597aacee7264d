"""SMS gateways: the interface the notifier uses, and Kannel's sendsms HTTP API behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from .errors import DeliveryError

# GSM 03.38 default alphabet and its extension table: text made only of these goes as 7-bit SMS
# (160 characters); anything else needs UCS-2 (70 characters), or the SMSC would put '?' in.
GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
    "^{}\\[~]|€\f"
)


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7 for ch in text)


class SmsGateway(Protocol):
    async def send(self, to: str, text: str, *, sender: str | None = None) -> None:
        """Hand one SMS to the gateway (from `sender`, else the configured one); raise (ideally
        `DeliveryError`) if it was not accepted."""
        ...


@dataclass(frozen=True)
class KannelSettings:
    url: str  # smsbox's sendsms URL, e.g. http://HOST:13013/cgi-bin/sendsms
    username: str
    password: str = field(repr=False)
    sender: str | None = None  # None: Kannel's global-sender
    timeout: float = 10.0


class KannelGateway:
    """Kannel smsbox `sendsms`: 202 with "0: Accepted for delivery" or "3: Queued for later
    delivery" means Kannel has the message; anything else is a failure."""

    def __init__(self, settings: KannelSettings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self._client = httpx.AsyncClient(timeout=settings.timeout, transport=transport)
        # Errors name the host only: the full URL carries the password.
        self._where = urlsplit(settings.url).netloc

    async def send(self, to: str, text: str, *, sender: str | None = None) -> None:
        s = self.settings
        params = {"username": s.username, "password": s.password, "to": to, "text": text, "charset": "UTF-8"}
        if sender or s.sender:
            params["from"] = sender or s.sender
        if not is_gsm7(text):
            params["coding"] = "2"
        try:
            response = await self._client.get(s.url, params=params)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"Kannel at {self._where} unreachable: {type(exc).__name__}: {exc}") from None
        body = response.text.strip()
        if response.status_code == 202 and body[:2] in ("0:", "3:"):
            return
        # 400 is Kannel's answer to a request it will never take (bad or denied number, empty
        # text); auth failures (403) and server errors may be fixed by ops, so they are retried.
        raise DeliveryError(f"Kannel at {self._where} answered {response.status_code}: {body[:200]}",
                            permanent=response.status_code == 400)

    async def aclose(self) -> None:
        await self._client.aclose()
