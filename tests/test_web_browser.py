"""The status pages in a real browser: Debian's chromium, driven by
selenium through Debian's chromedriver, against ``kvm-review bot web``
serving a state made by the real bot (tests/webstate.py).

Screenshots are kept: under $KVM_REVIEW_ARTIFACTS when set, else the test's
tmp_path (the path is printed; ``pytest -s`` shows it)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests import webstate
from tests.conftest import require_system
from tests.webstate import HOSTILE_EXCERPT, HOSTILE_NAME, HOSTILE_SUBJECT

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1000"]
pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    return webstate.build(tmp_path_factory.mktemp("browserstate"))


@pytest.fixture(scope="module")
def url(state):
    url, proc = webstate.serve(state, state.root / "web.log")
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def browser(tmp_path, monkeypatch):
    require_system("chromium", CHROMIUM)
    require_system("chromium-driver", CHROMEDRIVER)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium never fetches a browser or driver
    monkeypatch.setenv("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def artefacts(tmp_path: Path) -> Path:
    where = Path(os.environ.get("KVM_REVIEW_ARTIFACTS") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


def no_script_ran(driver) -> None:
    """No alert is open, the DOM holds nothing a mail could have injected,
    and the browser logged no CSP violation (nothing of ours was blocked)."""
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018
    for tag in ("script", "img", "iframe", "object", "embed"):
        assert driver.find_elements(By.TAG_NAME, tag) == [], tag
    assert driver.find_elements(By.CSS_SELECTOR, "[onerror], [onload], [onclick]") == []
    logs = [e["message"] for e in driver.get_log("browser")]
    assert not [m for m in logs if "Content Security Policy" in m or "alert" in m], logs


def test_list_filter_series_in_chromium(browser, url, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser
    d.get(url)
    assert d.title == "All series - kvm-review bot"
    # the stylesheet loaded under the CSP: the header has its colour
    header = d.find_element(By.TAG_NAME, "header")
    assert header.value_of_css_property("background-color") == "rgba(44, 62, 80, 1)"
    assert len(d.find_elements(By.CSS_SELECTOR, "table.series tbody tr")) == 11
    assert len(d.find_elements(By.CSS_SELECTOR, "figure.chart svg rect")) == 7 + 7  # bars + legend keys
    no_script_ran(d)
    shots = artefacts(tmp_path)
    d.save_screenshot(str(shots / "web-list.png"))

    # filter: needs a human
    d.find_element(By.CSS_SELECTOR, "nav.filters a.state-needs-human").click()
    assert d.current_url == url + "needs-human.html"
    subjects = [a.text for a in d.find_elements(By.CSS_SELECTOR, "td.subject a")]
    assert subjects == ["KVM: x86: Validate host-initiated writes to MSR_IA32_POWER_CTL"]

    # search, within all states
    d.get(url)
    box = d.find_element(By.NAME, "q")
    box.send_keys("<script>")
    d.find_element(By.CSS_SELECTOR, "form.search button").click()
    WebDriverWait(d, 10).until(lambda drv: drv.current_url != url)
    assert d.current_url == url + "index.html?q=%3Cscript%3E"
    links = d.find_elements(By.CSS_SELECTOR, "td.subject a")
    assert [a.text for a in links] == [f"KVM: x86: {HOSTILE_SUBJECT}"]
    no_script_ran(d)

    # follow the series: the hostile subject, name and changed line are text
    links[0].click()
    assert re.fullmatch(re.escape(url) + r"series-\d+\.html", d.current_url)
    assert d.find_element(By.CSS_SELECTOR, "h1 .subject").text == f"KVM: x86: {HOSTILE_SUBJECT}"
    assert d.find_element(By.CSS_SELECTOR, "dd.author").text == f"{HOSTILE_NAME} <mallory@example.org>"
    assert HOSTILE_EXCERPT in d.find_element(By.CSS_SELECTOR, "pre.excerpt").text
    assert "Subject: Re: [PATCH] KVM: x86: <script>alert(1)</script>" in d.find_element(
        By.CSS_SELECTOR, "pre.reply").text
    assert d.title == f"v1 KVM: x86: {HOSTILE_SUBJECT} - kvm-review bot"
    no_script_ran(d)
    d.set_window_size(1280, 2200)
    d.save_screenshot(str(shots / "web-series.png"))
    print(f"\nscreenshots: {shots / 'web-list.png'} {shots / 'web-series.png'}")
    assert (shots / "web-series.png").stat().st_size > 10_000

    # a bad URL: the 404 page
    d.get(url + "series-999.html")
    assert d.find_element(By.TAG_NAME, "h1").text == "Not found"


def test_exported_pages_in_chromium(browser, state, tmp_path):
    """The static export opened from disk: the meta CSP holds, links work."""
    from selenium.webdriver.common.by import By

    from reviewer import cli

    out = tmp_path / "site"
    assert cli.main(["bot", "--config", state.config, "export-html", str(out)]) == 0
    d = browser
    d.get((out / "index.html").as_uri())
    assert len(d.find_elements(By.CSS_SELECTOR, "table.series tbody tr")) == 11
    header = d.find_element(By.TAG_NAME, "header")  # style.css loaded beside the file, under the meta CSP
    assert header.value_of_css_property("background-color") == "rgba(44, 62, 80, 1)"
    assert d.find_elements(By.TAG_NAME, "form") == []
    d.find_element(By.CSS_SELECTOR, "nav.filters a.state-waiting").click()
    assert d.current_url == (out / "waiting.html").as_uri()
    d.find_element(By.CSS_SELECTOR, "td.subject a").click()
    assert d.find_element(By.CSS_SELECTOR, "h1 .subject").text == "KVM: x86: Reject MAXPHYADDR > 52 in KVM_SET_CPUID2"
    d.get((out / "index.html").as_uri())
    hostile = [a for a in d.find_elements(By.CSS_SELECTOR, "td.subject a") if "alert" in a.text]
    assert [a.text for a in hostile] == [f"KVM: x86: {HOSTILE_SUBJECT}"]
    hostile[0].click()
    assert HOSTILE_EXCERPT in d.find_element(By.CSS_SELECTOR, "pre.excerpt").text
    no_script_ran(d)
