"""Server-rendered pages: one Jinja2 environment (autoescaped) and the context every page shares
(the translator, the viewer, the CSRF token, the navigation)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from .auth.sessions import CSRF_FIELD, Viewer
from .auth.usernames import login_name
from .i18n import LANGUAGES, Translator, catalogue

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
# The seed's navigation, in its order: (path, locale key). Pages add nothing here.
NAVIGATION = (
    ("/", "nav_home"),
    ("/mailbox", "nav_mailbox"),
    ("/services", "nav_services"),
    ("/conferences", "nav_conferences"),
    ("/contacts", "nav_contacts"),
    ("/calls", "nav_calllog"),
)
NOTICE_KEY = re.compile(r"[a-z][a-z0-9_]{0,60}")

environment = Environment(
    loader=FileSystemLoader(TEMPLATE_DIR),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,  # a misspelt variable fails the page's test, not silently blank
    trim_blocks=True,
    lstrip_blocks=True,
)


def notice_of(request: Request) -> str | None:
    """The `?done=` key a page redirects to after a change ("saved"), when it is a known text."""
    key = request.query_params.get("done", "")
    return key if NOTICE_KEY.fullmatch(key) and key in catalogue() else None


def page(request: Request, template: str, who: Viewer | None, *, status_code: int = 200,
         lang: str | None = None, **context: Any) -> HTMLResponse:
    t = who.t if who is not None else Translator(lang or "en")
    # The navigation entry this page belongs to; none for a page outside it (the account page).
    here = request.url.path
    active = "/" if here == "/" else next(
        (path for path, _ in NAVIGATION if path != "/" and (here == path or here.startswith(path + "/"))), "")
    html = environment.get_template(template).render(
        t=t, lang=t.lang, languages=LANGUAGES, viewer=who, navigation=NAVIGATION, active=active,
        csrf_field=CSRF_FIELD, csrf_token=who.csrf_token if who else "",
        user_label=login_name(who.who) if who else "", notice=notice_of(request),
        request_path=request.url.path, **context)
    return HTMLResponse(html, status_code=status_code)
