"""Benchmark: the app's memory over one reviewer's whole session, as the pod that serves it sees it.

Usage: uv run python benchmarks/bench_reviewer_session.py [--out benchmarks/reviewer_session_results.md]

A fresh server on the embedded default (warm-up on, as deployed) and one Chromium session: the Predict page codes
and explains a description in every view, Review opens every tab, then the Train page's default run trains and
its model is used. The server process's resident memory and that of the server with all its child processes (the
warm-up's and the training run's: what a container's memory limit counts) are sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from nace_app.app.serving import CHROMIUM, CHROMIUM_ARGS, IDLE, AppServer

REVIEW_TABS = ["Automation", "Prediction sets", "Calibration", "Per class", "Confusions", "Errors", "Corrections",
               "Robustness", "Data", "Map", "Two models"]


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


class MemoryWatch:
    """Peak RSS (MB) of a process alone and with its descendants, sampled in a thread."""

    def __init__(self, pid: int):
        self.pid, self.server_peak, self.tree_peak = pid, 0.0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.server_peak = max(self.server_peak, _rss_kb(self.pid) / 1024)
            self.tree_peak = max(self.tree_peak, sum(_rss_kb(p) for p in _descendants(self.pid)) / 1024)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def idle(page) -> None:
    page.wait_for_timeout(150)
    page.wait_for_selector(IDLE, timeout=600_000)


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nace-reviewer-"))
    server = AppServer({"NACE_CACHE_DIR": str(work / "cache"), "NACE_MODEL_URI": "embedded",
                        "NACE_DATA_URI": "embedded", "NACE_WARM_UP": "1"}, work / "server.log")
    watch = MemoryWatch(server.process.pid)
    marks: list[tuple[str, float, float]] = []

    def mark(step: str) -> None:
        marks.append((step, watch.server_peak, watch.tree_peak))

    started = time.perf_counter()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server.url)
            idle(page)
            page.locator("textarea[aria-label='Activity description']").fill(
                "I sell croissants, baguettes and pains au chocolat in my small bakery")
            page.get_by_role("button", name="Code it").click()
            page.wait_for_selector(".nace-word")
            idle(page)
            for view in ("A vs B", "Words & characters", "Leave one out"):
                page.locator("button").filter(has_text=view).first.click()
                idle(page)
            mark("Predict: coded and explained")
            page.goto(f"{server.url}/review")
            idle(page)
            for tab in REVIEW_TABS:
                page.get_by_role("tab", name=tab).click()
                idle(page)
            mark("Review: every tab")
            page.goto(f"{server.url}/train")
            idle(page)
            page.get_by_role("button", name="Start training").click()
            page.get_by_role("button", name="Use this model").wait_for(timeout=600_000)
            page.get_by_role("button", name="Use this model").click()
            idle(page)
            mark("Train: the default run, its model in use")
            browser.close()
    finally:
        watch.stop()
        server.stop()
    lines = ["| after | server process peak (MB) | server and its children, peak (MB) |", "|---|---|---|"]
    lines += [f"| {step} | {server_mb:,.0f} | {tree_mb:,.0f} |" for step, server_mb, tree_mb in marks]
    report = (f"One reviewer's session on a fresh server ({time.perf_counter() - started:.0f} s)\n\n"
              + "\n".join(lines) + "\n")
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
