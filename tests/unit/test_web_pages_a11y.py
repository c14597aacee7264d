"""Every page of the navigation, rendered for users of each language: it renders with every text
found (no key shown in place of a text), in the user's language, and every control can be
reached and named by a screen reader or the keyboard: a label for each field, text on each
button, one main heading. The pages are found by walking the application, so a new page is
checked the day it is added."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_web_routes import all_routes
from webharness import WebHarness, make_harness

from web import i18n
from web.render import NAVIGATION

NAVIGATION_PATHS = {path for path, _ in NAVIGATION}

READERS = [("acme", "anna.virtanen", "fi"), ("acme", "sara.lindqvist", "sv"), ("borealis", "james.taylor", "en")]
PAGES = sorted({path for method, path, _ in all_routes()
                if method == "GET" and "{" not in path and not path.startswith(("/api/", "/login"))})
# The login pages (for anonymous visitors, in the platform's language) are checked by
# test_login_pages_are_labelled below.


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.lang = ""
        self.h1 = 0
        self.labels: set[str] = set()
        self.controls: list[dict[str, str]] = []
        self.open_label = 0
        self.buttons: list[list[str]] = []
        self.in_button = False
        self.images_without_alt = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.lang = a.get("lang", "")
        elif tag == "h1":
            self.h1 += 1
        elif tag == "label":
            self.open_label += 1
            if a.get("for"):
                self.labels.add(a["for"])
        elif tag in ("input", "select", "textarea"):
            # A `hidden` field (the user name beside a new password, for password managers) is
            # never shown, so it needs no label.
            if a.get("type") not in ("hidden", "submit", "button") and "hidden" not in a:
                self.controls.append({**a, "_tag": tag, "_wrapped": "1" if self.open_label else ""})
        elif tag == "button":
            self.in_button = True
            self.buttons.append([a.get("aria-label", "")])
        elif tag == "img" and "alt" not in a:
            self.images_without_alt += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.open_label -= 1
        elif tag == "button":
            self.in_button = False

    def handle_data(self, data: str) -> None:
        if self.in_button and self.buttons:
            self.buttons[-1].append(data.strip())


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebHarness]:
    monkeypatch.setattr(i18n, "STRICT", True)
    harness = make_harness(tmp_path)
    yield harness
    harness.state.close()


def test_the_navigation_pages_are_found() -> None:
    assert NAVIGATION_PATHS <= set(PAGES)


@pytest.mark.parametrize("tenant, uid, lang", READERS)
async def test_every_page_renders_labelled_in_the_users_language(site: WebHarness, tenant: str, uid: str,
                                                                   lang: str) -> None:
    async with site.client() as client:
        await site.login(client, site.who(tenant, uid))
        for path in PAGES:
            response = await client.get(path)
            if path not in NAVIGATION_PATHS and (response.status_code in (303, 404) or not response.headers.get(
                    "content-type", "").startswith("text/html")):
                # A file this user has none of (a greeting), not a page at all (audio), or a step
                # of the code login that sends a logged-in user on.
                continue
            if "<html" not in response.text:
                continue  # a fragment a page's script fetches (the live participant list)
            assert response.status_code == 200, (path, response.status_code, response.text[:500])
            page = Page()
            page.feed(response.text)
            assert page.lang == lang, path
            assert page.h1 == 1, f"{path}: {page.h1} main headings"
            for control in page.controls:
                named = (control.get("id") in page.labels or control["_wrapped"]
                         or control.get("aria-label") or control.get("aria-labelledby"))
                assert named, f"{path}: a {control['_tag']} without a label: {control}"
            for button in page.buttons:
                assert any(button), f"{path}: a button without text"
            assert page.images_without_alt == 0, path


async def test_login_pages_are_labelled(site: WebHarness) -> None:
    async with site.client() as client:
        for path in sorted({p for m, p, _ in all_routes() if m == "GET" and p.startswith("/login")}):
            response = await client.get(path)
            if response.status_code != 200:
                continue  # a step that needs the one before (the password page without a code)
            page = Page()
            page.feed(response.text)
            assert page.lang == "fi" and page.h1 == 1, path
            for control in page.controls:
                assert control.get("id") in page.labels or control["_wrapped"] or control.get("aria-label"), \
                    f"{path}: {control}"


async def test_the_current_page_is_marked_once_in_the_navigation(site: WebHarness) -> None:
    async with site.client() as client:
        await site.login(client, site.who("acme", "anna.virtanen"))
        for path, current in (("/", 'href="/"'), ("/services/forwards", 'href="/services"'),
                              ("/account", 'href="/account"')):
            nav = (await client.get(path)).text.split("</nav>", 1)[0]
            assert nav.count('aria-current="page"') == 1, path
            assert f'{current} aria-current="page"' in nav or f'{current} id="nav-user" aria-current="page"' in nav, path
