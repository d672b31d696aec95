"""Server memory of the Predict page's batch coding against the number of uploaded rows.

Usage: uv run python benchmarks/bench_page_batch.py [--rows 10000 200000] [--out benchmarks/page_batch_results.md]

For each size, a fresh `streamlit run app.py` (embedded model, its own cache folder), Chromium opens the Batch tab,
uploads a TXT of that many rows (demo descriptions repeated), clicks "Code the file" and waits for the preview.
Reported: the server's peak resident memory (VmHWM) before the upload and after coding, and the coding time. The page
streams the batch (chunks to a parquet file on disk, the preview from its head), so the peak should stay nearly flat
between 10,000 and 200,000 rows.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from nace_app.app.serving import CHROMIUM, CHROMIUM_ARGS, IDLE, AppServer


def write_upload(path: Path, rows: int) -> None:
    from nace_app.data.tables import load_labelled
    from nace_app.sources.resolve import embedded_data_dir

    texts = load_labelled(embedded_data_dir())["label"].to_list()
    path.write_text("\n".join(texts[i % len(texts)] for i in range(rows)) + "\n")


def measure(rows: int, work: Path, browser) -> dict[str, float]:
    upload = work / f"rows-{rows}.txt"
    write_upload(upload, rows)
    server = AppServer({"NACE_CACHE_DIR": str(work / f"cache-{rows}"), "NACE_MODEL_URI": "embedded",
                        "NACE_DATA_URI": "embedded"}, work / f"server-{rows}.log")
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server.url)
        page.wait_for_selector(IDLE, timeout=600_000)
        page.get_by_role("tab", name="Batch coding (CSV or TXT)").click()
        before = server.peak_mb()
        page.locator("input[type='file'][accept*='.txt']").set_input_files(str(upload))
        page.get_by_role("button", name="Code the file").wait_for(timeout=600_000)
        started = time.perf_counter()
        page.get_by_role("button", name="Code the file").click()
        page.get_by_role("button", name="Parquet").wait_for(timeout=3_600_000)
        seconds = time.perf_counter() - started
        page.close()
        return {"peak before the upload (MB)": before, "peak after coding (MB)": server.peak_mb(),
                "coding time (s)": seconds}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 200_000])
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    lines = ["| uploaded rows | peak before the upload (MB) | peak after coding (MB) | coding time (s) |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for rows in args.rows:
            result = measure(rows, Path(folder), browser)
            lines.append(f"| {rows:,} | " + " | ".join(f"{value:,.1f}" for value in result.values()) + " |")
            print(lines[-1], flush=True)
        browser.close()
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
