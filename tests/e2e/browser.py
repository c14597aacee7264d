"""A real browser for the home page's tests: Debian's Chromium, headless, through its ChromeDriver
(Selenium). Nothing is downloaded: the flags keep Chromium off the network but for the page."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import unavailable
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PHONE_SIZE = (412, 915)
DESKTOP_SIZE = (1280, 900)


def start_browser(profile: Path) -> WebDriver:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        unavailable("Debian's chromium and chromium-driver are not installed (deploy.sh test installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-extensions",
                 "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
                 "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={profile}",
                 f"--window-size={DESKTOP_SIZE[0]},{DESKTOP_SIZE[1]}", "--lang=fi"):
        options.add_argument(flag)
    # The driver is found by path: Selenium Manager would try to download one.
    return webdriver.Chrome(service=DriverService(executable_path=CHROMEDRIVER), options=options)


@pytest.fixture(scope="session")
def browser_session() -> Iterator[WebDriver]:
    profile = Path(tempfile.mkdtemp(prefix="vipbx-chromium-"))
    driver = start_browser(profile)
    try:
        yield driver
    finally:
        driver.quit()  # ends chromedriver and the browser it started
        shutil.rmtree(profile, ignore_errors=True)


class Browser:
    """The session's browser, reset for each test: no cookies, desktop size."""

    def __init__(self, driver: WebDriver, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url.rstrip("/")

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait_for(self, css: str, timeout: float = 10) -> WebElement:
        return WebDriverWait(self.driver, timeout).until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))

    def wait_text(self, css: str, text: str, timeout: float = 10) -> None:
        WebDriverWait(self.driver, timeout).until(
            expected_conditions.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))

    def type_into(self, css: str, text: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(text)

    def click(self, css: str) -> None:
        self.find(css).click()

    @property
    def path(self) -> str:
        url: str = self.driver.current_url
        return url.removeprefix(self.base_url)

    def screenshot(self, name: str, *, phone: bool = False) -> Path:
        """The page as it is now into docs/screenshots/NAME.png (the docs show these)."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        target = SCREENSHOTS / f"{name}.png"
        if phone:
            self.driver.set_window_size(*PHONE_SIZE)
        try:
            self.driver.save_screenshot(str(target))
        finally:
            if phone:
                self.driver.set_window_size(*DESKTOP_SIZE)
        return target

    def reset(self) -> None:
        self.driver.delete_all_cookies()
        self.driver.set_window_size(*DESKTOP_SIZE)
