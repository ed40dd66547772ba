"""In headless Chromium: the dashboard shows a trial's range-test image and note; the HTML report shows its images.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them). Without them the test is
skipped, unless ``TFT_HPO_REQUIRE_BROWSER`` is set (as in CI), where it fails. With ``TFT_HPO_SCREENSHOT=PATH``
it also writes the dashboard screenshot to PATH (the README's docs/dashboard.png is made this way).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tft_hpo.cli import main
from tft_hpo.figures import FIGURE_TITLES

from .conftest import python_cli

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
_WAIT_S = 60


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Chromium driven by Debian's chromedriver (selenium-manager never runs: nothing is downloaded)."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        if os.environ.get("TFT_HPO_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are required (apt-get install chromium chromium-driver)")
        pytest.skip(f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)")

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1280,1650",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def dashboard(workdir: Path) -> Iterator[Callable[[str], str]]:
    """Start ``tft-hpo dashboard NAME --port 0`` in a subprocess; returns the study URL it prints."""
    processes: list[subprocess.Popen[str]] = []

    def start(name: str) -> str:
        process = subprocess.Popen(
            python_cli("dashboard", name, "--port", "0"),
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        assert process.stdout is not None
        for line in process.stdout:
            if match := re.match(r"open (http://127\.0\.0\.1:\d+/dashboard/studies/\d+)$", line.strip()):
                return match[1]
        raise AssertionError(f"the dashboard printed no URL; stderr: {process.stderr.read() if process.stderr else ''}")

    yield start
    for process in processes:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=90)
        assert process.returncode == 0, err


def _wait(driver: WebDriver, condition: Callable[[WebDriver], object]) -> object:
    return WebDriverWait(driver, _WAIT_S).until(condition)


def _loaded_images(driver: WebDriver, selector: str) -> list[WebElement]:
    """The images ``selector`` matches once every one of them has loaded (naturalWidth > 0), else ``[]``."""
    images = driver.find_elements(By.CSS_SELECTOR, selector)
    loaded = [
        i for i in images if driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)
    ]
    return loaded if loaded and len(loaded) == len(images) else []


def _rendered_figures(driver: WebDriver) -> list[str]:
    """Ids of the report's plotly figures that plotly.js has drawn."""
    return [f for f in FIGURE_TITLES if driver.find_elements(By.CSS_SELECTOR, f"#{f}.js-plotly-plot .main-svg")]


def test_dashboard_shows_a_trials_range_test_and_note_and_the_report_its_images(
    study_file: Callable[..., Path],
    workdir: Path,
    tmp_path: Path,
    browser: WebDriver,
    dashboard: Callable[[str], str],
) -> None:
    changes = {"trainer": {"max_epochs": 1, "limit_train_batches": 2}}
    assert main(["run", str(study_file("web", changes))]) == 0
    study = optuna.load_study(study_name="web", storage=f"sqlite:///{workdir}/studies/web.db")
    best = study.best_trial
    assert all(t.state == TrialState.COMPLETE for t in study.get_trials())

    url = dashboard("web")
    browser.get(f"{url}/trials?numbers={best.number}")
    images = _wait(browser, lambda d: _loaded_images(d, "img[src*='/artifacts/']"))
    assert isinstance(images, list) and len(images) == 1
    assert browser.execute_script("return arguments[0].naturalWidth", images[0]) == 600
    page = browser.find_element(By.TAG_NAME, "body").text
    assert f"Trial {best.number}: complete, val_loss {best.value:.5f}" in page
    finder = best.user_attrs["lr_finder"]
    assert f"range-test suggestion: {finder['suggestion']:.3e} by {finder['source']}" in page
    assert f"learning rate used: {best.user_attrs['learning_rate']:.3e}" in page
    assert "range_test.csv" in page and "range_test.png" in page
    shot = tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(shot))
    if os.environ.get("TFT_HPO_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["TFT_HPO_SCREENSHOT"])

    browser.get(url)
    _wait(browser, lambda d: all(t in d.find_element(By.TAG_NAME, "body").text for t in FIGURE_TITLES.values()))

    report = workdir / "report.html"
    assert main(["report", "web", "--out", str(report), "--top", "2"]) == 0
    browser.get(report.as_uri())
    images = _wait(browser, lambda d: _loaded_images(d, "img.range-test"))
    assert isinstance(images, list) and len(images) == 2
    assert _wait(browser, lambda d: len(_rendered_figures(d)) == len(FIGURE_TITLES))
    assert browser.save_screenshot(str(tmp_path / "report.png"))
