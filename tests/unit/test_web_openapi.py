"""The JSON API's OpenAPI description: served at /api/openapi.json and kept in docs/openapi.json
for readers without a login. The committed file must match the code; after changing the API,
rewrite it with `VIPBX_UPDATE_DOCS=1 python -m pytest tests/unit/test_web_openapi.py`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, cast

from web.app import PUBLIC_API, create_app, openapi_document
from web.deps import WebDeps

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def current() -> dict[str, Any]:
    return openapi_document(create_app(cast(WebDeps, None)))


def test_the_committed_description_matches_the_code() -> None:
    spec = current()
    text = json.dumps(spec, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if os.environ.get("VIPBX_UPDATE_DOCS"):
        DOC.write_text(text, encoding="utf-8")
    assert DOC.exists() and DOC.read_text(encoding="utf-8") == text, \
        "docs/openapi.json is out of date: rerun with VIPBX_UPDATE_DOCS=1"


def test_every_operation_is_described_and_only_the_login_is_open() -> None:
    spec = current()
    for path, operations in spec["paths"].items():
        assert path.startswith("/api/v1/"), path
        for method, operation in operations.items():
            assert operation.get("description") or operation.get("summary"), f"{method} {path} has no text"
            open_ = operation.get("security") == []
            assert not open_ or (method, path) in PUBLIC_API, f"{method} {path} needs no login"
    assert spec["security"] == [{"session": []}]
