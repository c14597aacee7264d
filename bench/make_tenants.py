"""Write a synthetic platform into DIR: platform.yaml and one tNNN.yaml per tenant
(USERS users each, one softphone each), as an operator with many tenants would keep them.

    python bench/make_tenants.py 100 1000 /tmp/big
"""

from __future__ import annotations

import sys
from pathlib import Path


def write(tenants: int, users: int, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    platform = folder / "platform.yaml"
    platform.write_text("platform:\n  carrier: {host: 127.0.0.14, port: 5060, match: [127.0.0.14]}\n")
    paths = [platform]
    for t in range(tenants):
        lines = [f"tenants:\n  - id: t{t:03d}\n    name: Tenant {t} Oy\n    domain: t{t}.example\n    users:\n"]
        for u in range(users):
            # Unique E.164 numbers: +3584 + tenant (3 digits) + user (5 digits).
            lines.append(
                f'      - id: u{u:05d}\n        name: User {u} Läsnä\n        number: "+3584{t:03d}{u:05d}"\n'
                f'        extension: "{1000 + u}"\n        email: u{u}@t{t}.example\n'
                f'        pin: "{_pin(t, u)}"\n        language: fi\n'
                f"        devices: [{{id: t{t:03d}-u{u:05d}}}]\n"
            )
        path = folder / f"t{t:03d}.yaml"
        path.write_text("".join(lines), encoding="utf-8")
        paths.append(path)
    return paths


def _pin(t: int, u: int) -> str:
    # Deterministic and never weak: 7, three digits mixed from the indices, then 35.
    return f"7{(t * 7 + u * 13) % 1000:03d}35"


if __name__ == "__main__":
    write(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
