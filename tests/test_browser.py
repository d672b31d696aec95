"""A few end-to-end checks in headless Chromium, in the style of Streamlit's own e2e_playwright suite."""

from __future__ import annotations

import re
import shutil

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from nace_app.app.serving import CHROMIUM, CHROMIUM_ARGS, IDLE, AppServer
from nace_app.data.tables import stratified_sample

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def server(tmp_path_factory, migrated_mlflow_store, demo_frame):
    """The embedded model on 12,000 rows of the demo data (a stratified sample): every page as with the whole data,
    for a fifth of the scoring, embedding and evaluation a test server does not need to be timed on."""
    folder = tmp_path_factory.mktemp("server")
    (folder / "cache").mkdir()
    shutil.copy(migrated_mlflow_store, folder / "cache" / "mlflow.db")  # the runs log to it: migrated once already
    data = folder / "demo-sample.parquet"
    stratified_sample(demo_frame, 12_000).write_parquet(data)
    app = AppServer({"NACE_MODEL_URI": "embedded", "NACE_DATA_URI": str(data), "NACE_CACHE_DIR": str(folder / "cache")},
                    folder / "streamlit.log")
    yield app.url
    app.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def new_window(browser, width: int = 1400, timeout: int = 120_000):
    """A page in its own browser context: a separate Streamlit session, as another participant's window."""
    window = browser.new_context(viewport={"width": width, "height": 1000}).new_page()
    window.set_default_timeout(timeout)
    return window


@pytest.fixture
def page(browser, server):
    window = new_window(browser)
    yield window
    window.context.close()


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
    coded = page.locator("[data-testid='stMetric']").filter(has_text="Coded automatically").first  # the threshold rule
    coded.wait_for()
    before = coded.inner_text()
    thumb = page.locator("[data-testid='stSidebar'] input[type='range']").first
    thumb.focus()
    for _ in range(10):
        thumb.press("ArrowRight")
    page.wait_for_function(
        "before => [...document.querySelectorAll(\"[data-testid='stMetric']\")].some("
        "m => m.innerText.includes('Coded automatically') && m.innerText !== before)", arg=before)
    page.get_by_role("tab", name="Errors").click()
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
    train_on(page, 700)
    page.get_by_role("button", name="Start training").click()
    page.get_by_role("button", name="Use this model").wait_for(timeout=240_000)
    assert page.locator(".js-plotly-plot").count() >= 2
    page.get_by_text("Result", exact=True).wait_for()
    page.get_by_text("Download the model (.zip)").wait_for()
    page.get_by_text("MLflow run").first.wait_for()
    assert page.get_by_text("MLflow run").first.is_visible()


LYON = ("Founded in 1987 in the historic centre of Lyon, our family business with four employees and two shops is a "
        "traditional artisan bakery")


def test_a_long_description_is_read_and_highlighted_to_its_last_word(page, server):
    code_description(page, server, LYON)
    assert page.locator(".nace-word").filter(has_text="bakery").count() == 1
    assert page.locator(".nace-unread").count() == 0
    assert page.get_by_text("fixed window").count() == 0


def test_batch_coding_returns_every_line_with_its_text(page, server, tmp_path):
    import csv

    lines = ["bakery and pastry shop", "", "taxi driver", "   ", "we build websites for small firms"]
    source = tmp_path / "firms.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    page.goto(f"{server}/")
    wait_idle(page)
    page.get_by_role("tab", name="Batch coding (CSV or TXT)").click()
    page.locator("[data-testid='stFileUploaderDropzoneInput']").first.set_input_files(str(source))  # the batch tab's
    page.get_by_role("button", name="Code the file").click()
    with page.expect_download() as download:
        page.get_by_role("button", name="CSV", exact=True).click()
    saved = tmp_path / "coded.csv"
    download.value.save_as(saved)
    rows = list(csv.DictReader(saved.open(encoding="utf-8-sig")))
    assert [r["text"] for r in rows] == lines
    assert [r["verdict"] == "not coded (empty)" for r in rows] == [False, True, False, True, False]
    assert rows[0]["code_1"] and "." in rows[0]["code_1"]


def test_two_queued_runs_in_two_windows_both_finish_in_order(browser, server):
    pages = []
    for _ in range(2):
        window = new_window(browser, timeout=300_000)
        window.goto(f"{server}/train")
        wait_idle(window)
        rows = window.get_by_label("Subsample of the train split (rows)")
        rows.fill("700")
        rows.press("Enter")
        wait_idle(window)
        pages.append(window)
    first, second = pages
    first.get_by_role("button", name="Start training").click()
    first.get_by_text(re.compile(r"Epoch \d+ of \d+ · step")).wait_for()  # running: the two clicks' order is the runs'
    second.get_by_role("button", name="Start training").click()
    second.get_by_text("queued (position 1)").wait_for()
    first.get_by_role("button", name="Use this model").wait_for()
    second.get_by_role("button", name="Use this model").wait_for()
    for window in pages:
        window.context.close()


def test_at_800_px_the_sidebar_folds_and_figures_and_buttons_are_not_cut(browser, server):
    narrow = new_window(browser, width=800)
    narrow.goto(f"{server}/review")
    wait_idle(narrow)
    narrow.wait_for_function("document.querySelector(\"[data-testid='stSidebar']\").getBoundingClientRect().right < 40")
    narrow.locator("[data-testid='stMetricValue']").first.wait_for()
    cut = narrow.evaluate("""[...document.querySelectorAll("[data-testid='stMetricValue'], [data-testid='stMetricLabel'], button")]
        .filter(e => e.offsetParent !== null)
        .filter(e => { const t = e.querySelector('p, div') || e; return t.scrollWidth > t.clientWidth + 1; })
        .map(e => e.innerText)""")
    assert cut == []
    narrow.context.close()


GRID_HEADERS = """() => [...document.querySelectorAll("[data-testid='stDataFrame']")]
    .map(grid => [...grid.querySelectorAll("th")].map(header => header.innerText))"""  # the grid draws only what shows


@pytest.mark.parametrize(("tab", "decisive"), [
    ("Errors", ["Row", "True", "Predicted", "Top-1", "Description"]),
    ("Per class", ["Code", "Test rows", "Precision", "Recall", "F1", "Most confused with", "Times"]),
    ("Confusions", ["True", "Predicted", "Rows"]),
])
def test_at_800_px_the_columns_a_reviewer_decides_on_are_in_view(browser, server, tab, decisive):
    narrow = new_window(browser, width=800, timeout=300_000)  # the first window computes the test split's scores
    open_review_tab(narrow, server, tab)
    assert narrow.title() == "Review · NACE Explorer"
    narrow.locator("[data-testid='stDataFrame'] th").first.wait_for(state="attached")  # a screen reader's copy
    first_table = narrow.evaluate(GRID_HEADERS)[0]
    assert first_table[: len(decisive)] == decisive
    narrow.context.close()


def open_review_tab(page, server, tab: str) -> None:
    page.goto(f"{server}/review")
    wait_idle(page)
    page.get_by_role("tab", name=tab).click()
    wait_idle(page)


def train_on(page, rows: int) -> None:
    """Type the train-split subsample, as a workshop leader does before starting a run."""
    page.get_by_label("Subsample of the train split (rows)").fill(str(rows))
    page.get_by_label("Subsample of the train split (rows)").press("Enter")


def test_clicking_a_confusion_square_shows_that_cell(page, server):
    open_review_tab(page, server, "Confusions")
    cell = page.locator("p").filter(has_text="→ predicted").first
    before = cell.inner_text()  # the default: the largest confusion
    points = page.locator(".js-plotly-plot .scatterlayer .point")
    points.first.wait_for()
    changed = "before => [...document.querySelectorAll('p')].some(p => p.innerText.includes('→ predicted') " \
              "&& p.innerText !== before)"
    for index in (points.count() // 2, points.count() // 3, points.count() - 1):  # one of them is not the default
        points.nth(index).click(force=True)
        try:
            page.wait_for_function(changed, arg=before, timeout=20_000)
            break
        except PlaywrightTimeout:
            continue
    assert page.locator("p").filter(has_text="→ predicted").first.inner_text() != before


def test_an_error_corrected_in_review_trains_the_next_model(page, server):
    open_review_tab(page, server, "Errors")
    page.get_by_role("button", name="Save the right code").click()  # the picker starts on the test row's true code
    page.get_by_text("Saved #1:").wait_for()
    page.get_by_role("tab", name="Corrections").click()
    wait_idle(page)
    page.get_by_role("button", name="Download all corrections (CSV)").wait_for()
    page.get_by_role("link", name="Train").click()
    page.get_by_text("Train with the corrections (1 description,").click()
    wait_idle(page)
    train_on(page, 700)
    wait_idle(page)
    page.locator("[data-testid='stSlider']").filter(has_text="Epochs").get_by_role("slider").press("Home")  # 1 epoch
    wait_idle(page)
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("With the 1 correction: before and after").wait_for(timeout=300_000)
    assert page.get_by_text("1 corrected description is in the test split").is_visible()
