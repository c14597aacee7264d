"""The example YAML copied into a test's folder, for tests that edit it (the parse cache's,
the checked tenants')."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    """platform.yaml, acme.yaml and borealis.yaml, copied."""
    copies = []
    for name in ("platform.yaml", "acme.yaml", "borealis.yaml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
        copies.append(tmp_path / name)
    return copies
