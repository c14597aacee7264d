"""Reloading Asterisk through AMI after a deploy, and the command-line options that bound it."""

from __future__ import annotations

import logging
from urllib.parse import quote

import click
import httpx

from ari_app.client import AriClient, AriError
from asterisk_conf import deploy as deploying
from asterisk_conf.dialplan_patch import FINGERPRINT, DialplanNotLive, DialplanPatch
from asterisk_conf.pjsip_patch import MARKER_TYPE, PjsipNotLive, PjsipObject, PjsipPatch
from base.ami import CONNECT_TIMEOUT, AmiSettings, ami_session
from base.progress import SILENT, Progress

log = logging.getLogger(__name__)

# Each module reload of a deploy: res_pjsip and app_voicemail take 35-50 s at 40,000 users.
RELOAD_TIMEOUT = 120.0


def ami_timeouts(command):  # type: ignore[no-untyped-def]
    """--ami-timeout and --reload-timeout, for the commands that reload Asterisk."""
    command = click.option(
        "--reload-timeout", type=click.FloatRange(min=0.1), default=RELOAD_TIMEOUT, show_default=True,
        envvar="VIPBX_RELOAD_TIMEOUT", metavar="SECONDS",
        help="How long Asterisk may take to answer each module reload; no answer counts as a "
             "refusal. Env: VIPBX_RELOAD_TIMEOUT.")(command)
    return click.option(
        "--ami-timeout", type=click.FloatRange(min=0.1), default=CONNECT_TIMEOUT, show_default=True,
        envvar="VIPBX_AMI_TIMEOUT", metavar="SECONDS",
        help="How long AMI may take to accept the connection and the login. Env: VIPBX_AMI_TIMEOUT.")(command)


def ami_reloader(settings: AmiSettings, connect_timeout: float, reload_timeout: float,
                 progress: Progress = SILENT) -> deploying.Reloader:
    async def reload(targets: list[str]) -> None:
        async with ami_session(settings, connect_timeout, action_timeout=reload_timeout) as ami:
            # A module reload takes up to a minute on a large platform: a terminal sees which.
            progress.begin(f"reloading {len(targets)} module(s)", len(targets))
            try:
                for target in targets:
                    await ami.action("Reload", Module=target)
                    progress.advance()
            finally:
                progress.end()

    return reload


def ami_dialplan_patcher(settings: AmiSettings, connect_timeout: float, action_timeout: float,
                         progress: Progress = SILENT) -> deploying.DialplanPatcher:
    """Applies a dialplan change through AMI (asterisk_conf.dialplan_patch), step by step, if
    Asterisk runs the dialplan it was planned from (DialplanNotLive otherwise: the deploy reloads
    instead). The first step Asterisk refuses raises, and the deploy puts the old files back."""
    async def patch(change: DialplanPatch) -> None:
        async with ami_session(settings, connect_timeout, action_timeout=action_timeout) as ami:
            running = (await ami.action("Getvar", Variable=FINGERPRINT)).get("Value") or ""
            if running != change.expected:
                raise DialplanNotLive(f"Asterisk runs dialplan {running or '(unknown)'}, not "
                                      f"{change.expected} which the change was planned from")
            progress.begin(f"changing {change.extensions} dialplan extension(s) live", len(change.steps))
            try:
                for action, fields in change.steps:
                    await ami.action(action, **fields)
                    progress.advance()
            finally:
                progress.end()

    return patch


class AriDevicePusher:
    """Creates new SIP devices through ARI's dynamic configuration (asterisk_conf.pjsip_patch):
    `PUT /asterisk/config/dynamic/res_pjsip/{type}/{id}` into res_pjsip's memory store. Each
    request may take `timeout` seconds (they take milliseconds): an ARI that cannot be reached
    before anything was created means a reload instead, soon."""

    def __init__(self, ari_url: str, user: str, password: str, timeout: float,
                 progress: Progress = SILENT, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.ari_url, self.user, self.password = ari_url, user, password
        self.timeout, self.progress = timeout, progress
        self.transport = transport  # tests: httpx.MockTransport

    def _client(self) -> AriClient:
        return AriClient(self.ari_url, self.user, self.password, "vipbx-deploy", timeout=self.timeout,
                         transport=self.transport)

    async def push(self, patch: PjsipPatch) -> None:
        async with self._client() as ari:
            try:
                await ari.get(_object_path(MARKER_TYPE, patch.expected))
            except AriError as exc:
                if exc.status != 404:
                    raise
                raise PjsipNotLive(f"Asterisk does not run pjsip.conf {patch.expected}, which the "
                                   "change was planned from") from exc
            except httpx.TransportError as exc:  # nothing created yet: the reload does it all
                raise PjsipNotLive(f"ARI at {self.ari_url} not reachable ({exc!r})") from exc
            created: list[PjsipObject] = []
            self.progress.begin(f"creating {patch.devices} SIP device(s) live", len(patch.objects))
            try:
                for each in patch.objects:
                    body = {"fields": [{"attribute": key, "value": value} for key, value in each.fields]}
                    try:
                        await ari.request("PUT", _object_path(each.type, each.id), json=body)
                    except AriError as exc:
                        if not created:
                            # Nothing created: e.g. res_pjsip has no memory store yet (sorcery.conf
                            # is read at a restart). The reload does it all.
                            raise PjsipNotLive(f"ARI refused the first object: {exc}") from exc
                        raise
                    created.append(each)
                    self.progress.advance()
            except BaseException:
                # Half a device must not stay: what this push created goes again (the deploy
                # also noted it, for the reload that follows).
                await _delete(ari, [(o.type, o.id) for o in reversed(created)])
                raise
            finally:
                self.progress.end()

    async def forget(self, objects: list[tuple[str, str]]) -> list[tuple[str, str]]:
        try:
            async with self._client() as ari:
                return await _delete(ari, objects)
        except Exception as exc:  # noqa: BLE001 - never raises: the caller keeps the list and tries again
            log.warning("ARI at %s: %s", self.ari_url, exc)
            return objects


async def _delete(ari: AriClient, objects: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Delete each from the memory store; those that may still be there. 403 (not in the memory
    store, only in the file) and 404 (nowhere) count as gone."""
    left: list[tuple[str, str]] = []
    for number, (kind, name) in enumerate(objects):
        try:
            await ari.request("DELETE", _object_path(kind, name))
        except AriError as exc:
            if exc.status not in (403, 404):
                left.append((kind, name))
        except httpx.TransportError:
            return left + objects[number:]  # ARI gone: not one timeout per object
    return left


def _object_path(kind: str, name: str) -> str:
    return f"asterisk/config/dynamic/res_pjsip/{quote(kind, safe='')}/{quote(name, safe='')}"
