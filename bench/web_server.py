"""The home page alone, for `bench_web.py`: the same app `vipbx serve` runs (`web.serve.run_web`)
over a call-state SQLite database and a voicemail spool in HOME, without Asterisk (ARI and AMI
absent, so live states read as unknown). Exits when its stdin closes or after --lifetime s.

    python bench/web_server.py HOME --port 18590 FILE...
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ari_app.presence.services import PresenceService  # noqa: E402
from ari_app.voicemail.services import VoicemailService  # noqa: E402
from asterisk_conf.validate import load_config  # noqa: E402
from callstate import CallStateService  # noqa: E402
from vmstore import VoicemailStore  # noqa: E402
from web.deps import WebDeps  # noqa: E402
from web.serve import run_web  # noqa: E402


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("home", type=Path)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--lifetime", type=float, default=900)
    args = parser.parse_args()
    config = load_config(args.files)
    state = CallStateService(args.home / "state.sqlite3", config)
    store = VoicemailStore(args.home / "spool")
    deps = WebDeps(state=state, store=store, presence=PresenceService(config, state, None),
                   voicemail=VoicemailService(config, store, state, None, None, args.home / "recording"),
                   notifier=None, messenger=None, home=args.home)
    gc.collect()
    gc.freeze()  # as `vipbx serve` does: the configuration lives as long as the process
    server = asyncio.create_task(run_web(deps))
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    await asyncio.wait([server, asyncio.ensure_future(stdin_closed)], timeout=args.lifetime,
                       return_when=asyncio.FIRST_COMPLETED)
    server.cancel()
    await asyncio.gather(server, return_exceptions=True)
    state.close()


if __name__ == "__main__":
    asyncio.run(main())
