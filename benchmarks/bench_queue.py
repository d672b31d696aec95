"""Does a queued second training slow the first? Two /train windows in Chromium against one app server.

Usage: uv run python benchmarks/bench_queue.py [--rows 2000] [--epochs 3] [--post-script-gc]

`--post-script-gc` turns Streamlit's full garbage collection after every script run back on (its default, which
`.streamlit/config.toml` turns off): the "before" of the fix.

1. window A alone: click Start, time until "Use this model" shows;
2. window A again, and window B starts its own run while A's is going (B is queued): A's time, then B's.
Prints the times and the server's CPU seconds spent while A ran. Needs Debian's chromium.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from nace_app.app.serving import CHROMIUM, CHROMIUM_ARGS, IDLE, AppServer


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 1/100 s


def open_train(browser, url: str, rows: int, epochs: int):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(900_000)
    page.goto(f"{url}/train")
    page.wait_for_selector(IDLE)
    rows_box = page.get_by_label("Subsample of the train split (rows)")
    rows_box.fill(str(rows))
    rows_box.press("Enter")
    page.wait_for_timeout(300)
    page.wait_for_selector(IDLE)
    epochs_slider = page.get_by_role("slider", name="Epochs")
    epochs_slider.focus()
    for _ in range(40):
        epochs_slider.press("ArrowLeft")
    for _ in range(epochs - 1):
        epochs_slider.press("ArrowRight")
    page.wait_for_timeout(300)
    page.wait_for_selector(IDLE)
    return page


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--post-script-gc", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nace-queue-bench-"))
    server = AppServer({"NACE_MODEL_URI": "embedded", "NACE_DATA_URI": "embedded",
                        "NACE_CACHE_DIR": str(work / "cache"), "NACE_MAX_TRAINING_RUNS": "1",
                        "STREAMLIT_RUNNER_POST_SCRIPT_GC": str(args.post_script_gc).lower()}, work / "server.log")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            solo = open_train(browser, server.url, args.rows, args.epochs)
            cpu = cpu_seconds(server.process.pid)
            started = time.perf_counter()
            solo.get_by_role("button", name="Start training").click()
            solo.get_by_role("button", name="Use this model").wait_for()
            solo_time, solo_cpu = time.perf_counter() - started, cpu_seconds(server.process.pid) - cpu
            solo.close()

            first = open_train(browser, server.url, args.rows, args.epochs)
            second = open_train(browser, server.url, args.rows, args.epochs)
            cpu = cpu_seconds(server.process.pid)
            started = time.perf_counter()
            first.get_by_role("button", name="Start training").click()
            first.get_by_text("Epoch 1 of").first.wait_for()
            second.get_by_role("button", name="Start training").click()
            second.get_by_text("queued (position").first.wait_for()
            first.get_by_role("button", name="Use this model").wait_for()
            first_time, first_cpu = time.perf_counter() - started, cpu_seconds(server.process.pid) - cpu
            second.get_by_role("button", name="Use this model").wait_for()
            both_time = time.perf_counter() - started
            browser.close()
    finally:
        server.stop()
    print(f"| run ({args.rows} rows, {args.epochs} epochs) | wall time (s) | server CPU while it ran (s) |")
    print("|---|---|---|")
    print(f"| window A alone | {solo_time:.1f} | {solo_cpu:.1f} |")
    print(f"| window A with window B queued | {first_time:.1f} | {first_cpu:.1f} |")
    print(f"| both runs, one after the other | {both_time:.1f} | |")


if __name__ == "__main__":
    main()
