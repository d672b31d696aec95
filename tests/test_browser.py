"""A few end-to-end checks in headless Chromium, in the style of Streamlit's own e2e_playwright suite."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import REPO

CHROMIUM = "/usr/bin/chromium"
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`streamlit run` on a free port, output to a file, ready when /_stcore/health says ok."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = tmp_path_factory.mktemp("server")
    env = {**os.environ, "NACE_MODEL_URI": "embedded", "NACE_DATA_URI": "embedded",
           "NACE_CACHE_DIR": str(folder / "cache")}
    log = (folder / "streamlit.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{base}/_stcore/health", timeout=1).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        process.terminate()
        pytest.fail(f"streamlit did not start; see {log.name}")
    yield base
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(120_000)
    yield page
    context.close()


def wait_idle(page) -> None:
    page.wait_for_timeout(300)
    page.wait_for_selector(IDLE)


def code_description(page, server, text: str) -> None:
    page.goto(f"{server}/")
    wait_idle(page)
    page.locator("textarea[aria-label='Activity description']").fill(text)
    page.get_by_role("button", name="Code it").click()
    page.wait_for_selector(".nace-word")
    wait_idle(page)


def test_typing_a_description_shows_candidates_and_highlights(page, server):
    code_description(page, server, "I sell croissants and pains au chocolat in my bakery")
    assert page.get_by_text("Manufacture of bread").first.is_visible()
    assert page.locator(".nace-word").filter(has_text="croissants").count() >= 1
    assert "text=I+sell+croissants" in page.url or "text=I%20sell%20croissants" in page.url


def test_state_survives_a_round_trip_through_another_page(page, server):
    code_description(page, server, "we rent out holiday cottages by the week")
    from playwright.sync_api import expect

    page.get_by_role("link", name="Train").click()
    page.get_by_role("button", name="Start training").wait_for()
    wait_idle(page)
    page.get_by_role("link", name="Predict").click()
    page.wait_for_selector(".nace-word")  # the Predict page is back, with its result
    expect(page.locator("textarea[aria-label='Activity description']")).to_have_value(
        "we rent out holiday cottages by the week")
    expect(page.get_by_text("Automation threshold").first).to_be_visible()


def test_review_threshold_and_a_misclassified_row_to_its_explanation(page, server):
    page.goto(f"{server}/review")
    wait_idle(page)
    coded = page.locator("[data-testid='stMetric']").filter(has_text="Coded automatically")
    coded.wait_for()
    before = coded.inner_text()
    thumb = page.locator("[data-testid='stSidebar'] input[type='range']").first
    thumb.focus()
    for _ in range(10):
        thumb.press("ArrowRight")
    page.wait_for_function(
        "before => [...document.querySelectorAll(\"[data-testid='stMetric']\")].some("
        "m => m.innerText.includes('Coded automatically') && m.innerText !== before)", arg=before)
    page.get_by_role("tab", name="Misclassifications").click()
    chooser = page.locator("[data-testid='stSelectbox']").filter(has_text="Explain row").locator("input")
    chooser.click()
    chooser.press("ArrowDown")
    chooser.press("Enter")
    wait_idle(page)
    page.wait_for_selector(".nace-highlight")
    assert page.locator(".nace-highlight").count() == 3
    assert page.get_by_text("rather than").first.is_visible()


def test_a_tiny_training_run_shows_curves_and_a_result(page, server):
    page.goto(f"{server}/train")
    wait_idle(page)
    page.get_by_label("Subsample of the train split (rows)").fill("700")
    page.get_by_label("Subsample of the train split (rows)").press("Enter")
    page.get_by_role("button", name="Start training").click()
    page.get_by_role("button", name="Use this model").wait_for(timeout=240_000)
    assert page.locator(".js-plotly-plot").count() >= 2
    page.get_by_text("Result", exact=True).wait_for()
    page.get_by_text("Download the model (.zip)").wait_for()
    page.get_by_text("MLflow run").first.wait_for()
    assert page.get_by_text("MLflow run").first.is_visible()
