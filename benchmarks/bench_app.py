"""Benchmark of the app as users feel it, on this machine.

Usage: uv run python benchmarks/bench_app.py [--out benchmarks/app_results.md]

- cold start: a fresh cache folder, `streamlit run app.py` started, until the Predict page is idle in Chromium;
- Predict: time from clicking "Code it" to the highlighted candidates;
- Review with 10,500 test rows (a 70,000-row dataset built by repeating the demo data, like the real one's size):
  first open (predictions computed and cached on disk), open after a server restart (cache reused) by loading its
  address (the browser loads and compiles the app's scripts again) and by the sidebar's link, the time a filter
  change and a threshold move take, and the server's peak memory;
- training: the default run (the Train page's and the CLI's) in-process, and
  `nace-app train --data embedded --sample 3000 --epochs 2 --mlflow` as a whole command, with its MLflow metric
  history.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nace_app.app.serving import CHROMIUM, CHROMIUM_ARGS, IDLE, ROOT, AppServer


def idle(page) -> None:
    page.wait_for_timeout(150)
    page.wait_for_selector(IDLE, timeout=600_000)


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def build_large_dataset(path: Path) -> None:
    """70,000 rows like the reference data: the demo descriptions repeated with a suffix so labels differ."""
    import polars as pl

    from nace_app.data.tables import load_labelled
    from nace_app.sources.resolve import embedded_data_dir

    demo = load_labelled(embedded_data_dir()).select("code", "name", "label")
    copies = [demo.with_columns(pl.col("label") + (f" ({i})" if i else "")) for i in range(6)]
    pl.concat(copies).head(70_000).write_parquet(path)


def server_side_review_times(env: dict[str, str]) -> dict[str, float]:
    """The Review page's script time alone (Streamlit's AppTest, no browser), predictions already on disk."""
    from streamlit.testing.v1 import AppTest

    from nace_app.app.state import widget_key

    os.environ.update(env)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.run()
    at.switch_page("app_pages/review.py")
    times = {"Review script, first run in a new server process, disk cache (s)": timed(at.run)}
    at.slider(key=widget_key("automation_threshold")).set_value(0.6)
    times["Review script, a threshold move (s, server side)"] = timed(at.run)
    at.session_state["review_view"] = "Errors"
    at.run()
    at.text_input(key=widget_key("filter_true")).input("47")
    times["Review script, a filter change (s, server side)"] = timed(at.run)
    return times


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "app_results.md")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nace-app-bench-"))
    results: dict[str, float] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})

        server = AppServer({"NACE_CACHE_DIR": str(work / "cold-cache"), "NACE_CONNECT_TIMEOUT": "2"}, work / "cold.log")
        page.goto(server.url)
        page.locator("textarea[aria-label='Activity description']").wait_for(timeout=600_000)
        idle(page)
        results["cold start to a usable Predict page (s, fresh cache, default sources unreachable)"] = (
            time.perf_counter() - server.started)
        text = "I sell croissants, baguettes and pains au chocolat in my small bakery in the town centre every day"
        page.locator("textarea[aria-label='Activity description']").fill(text)

        def code_it() -> None:
            page.get_by_role("button", name="Code it").click()
            page.wait_for_selector(".nace-word")
            idle(page)

        results["Predict: first 'Code it' after start-up, to candidates and highlights in the browser (s)"] = timed(
            code_it)
        page.locator("textarea[aria-label='Activity description']").fill(
            "We design and install solar panels and heat pumps on the roofs of private houses and small offices")
        results["Predict: a later 'Code it', to candidates and highlights in the browser (s)"] = timed(code_it)
        server.stop()

        data = work / "large.parquet"
        build_large_dataset(data)
        env = {"NACE_CACHE_DIR": str(work / "review-cache"), "NACE_MODEL_URI": "embedded", "NACE_DATA_URI": str(data)}
        for attempt in ("first open (predictions computed)", "after a server restart (disk cache)",
                        "after a server restart, from the sidebar's link (disk cache)"):
            server = AppServer(env, work / "review.log")
            page.goto(server.url)
            idle(page)
            if "sidebar" in attempt:  # in-app navigation: the browser keeps the page's scripts, as a user's does
                results[f"Review, 10,500 test rows, {attempt} (s)"] = timed(lambda: (
                    page.get_by_role("link", name="Review").click(), page.wait_for_url("**/review"),
                    page.get_by_text("Review the model on the test split").wait_for(), idle(page)))
                server.stop()
                continue
            results[f"Review, 10,500 test rows, {attempt} (s)"] = timed(
                lambda url=server.url: (page.goto(f"{url}/review"), idle(page)))
            if attempt.startswith("after"):
                fresh = browser.new_page(viewport={"width": 1400, "height": 1000})
                results["Review, 10,500 test rows, a new session on a running server (s)"] = timed(
                    lambda url=server.url, fresh=fresh: (fresh.goto(f"{url}/review"), idle(fresh)))
                fresh.close()
                page.get_by_role("tab", name="Errors").click()
                idle(page)
                field = page.get_by_label("True code starts with")
                results["Review: a filter change (s, browser round trip)"] = timed(
                    lambda field=field: (field.fill("47"), field.press("Enter"), idle(page)))
                thumb = page.locator("[data-testid='stSidebar'] input[type='range']").first
                thumb.focus()
                results["Review: a threshold move (s, browser round trip)"] = timed(
                    lambda thumb=thumb: (thumb.press("ArrowRight"), idle(page)))
                results["peak memory of the whole app server (MB)"] = server.peak_mb()
            server.stop()
        browser.close()

    results.update(server_side_review_times(env))

    from nace_app.model.opening import open_data
    from nace_app.settings.config import load_settings
    from nace_app.training.core import TrainingSettings, train_model

    os.environ.update(NACE_DATA_URI="embedded", NACE_CACHE_DIR=str(work / "train-cache"))
    data_set = open_data(load_settings())
    started = time.perf_counter()
    train_model(data_set.splits, TrainingSettings(), work / "page-default-run")
    results["Training: the default run (30 rows per class, 5 epochs), in-process (s)"] = (
        time.perf_counter() - started)
    started = time.perf_counter()
    output = subprocess.run([sys.executable, "-m", "nace_app", "train", "--data", "embedded", "--sample", "3000",
                             "--epochs", "2", "--mlflow", "--json"], cwd=ROOT, capture_output=True, text=True, check=True,
                            env={**os.environ, "NACE_CACHE_DIR": str(work / "cli-cache")})
    results["nace-app train --data embedded --sample 3000 --epochs 2 --mlflow (s, whole command)"] = (
        time.perf_counter() - started)
    summary = json.loads(output.stdout)
    from mlflow.tracking import MlflowClient

    history = MlflowClient(summary["mlflow_tracking_uri"]).get_metric_history(summary["mlflow_run_id"], "val_loss")
    results["MLflow val_loss history points of that run"] = len(history)

    lines = ["| measure | value |", "|---|---|"] + [f"| {k} | {v:,.2f} |" for k, v in results.items()]
    report = "\n".join(lines) + "\n"
    args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
