"""Cold start and first "Code it", as a newcomer meets the app: a fresh cache folder, `streamlit run app.py`, Chromium.

Usage: uv run python benchmarks/bench_cold_start.py [--root DIR] [--repeats 2]

`--root` runs another checkout's app with this environment (how the before/after figures in the notes were taken).
Reports: seconds from the server's start to the Predict page drawn and idle; seconds from clicking "Code it" to the
candidates and highlights drawn; the server's CPU-seconds and peak memory (VmHWM) at the end.
Self-contained on purpose (no `nace_app` import), so that it measures older checkouts too.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_figures(pid: int) -> tuple[float, float]:
    """(CPU-seconds of the server, its peak resident memory in MB)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmHWM")) / 1024
    return cpu, peak


def one_run(root: Path) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    port = free_port()
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NACE_CACHE_DIR=cache, NACE_S3_ENDPOINT="http://127.0.0.1:9", NACE_CONNECT_TIMEOUT="2")
        started = time.perf_counter()
        server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                                   "--server.port", str(port), "--browser.gatherUsageStats", "false",
                                   "--server.fileWatcherType", "none"], cwd=root, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).read() == b"ok":
                        break
                except OSError:
                    time.sleep(0.1)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_selector("textarea", timeout=600_000)
                page.wait_for_timeout(150)
                page.wait_for_selector(IDLE, timeout=600_000)
                drawn = time.perf_counter() - started
                page.fill("textarea", "I sell croissants and pains au chocolat in my bakery")
                clicked = time.perf_counter()
                page.get_by_role("button", name="Code it").click()
                page.wait_for_timeout(150)
                page.wait_for_selector(IDLE, timeout=600_000)
                first_code = time.perf_counter() - clicked
                browser.close()
            cpu, peak = server_figures(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    return {"start to Predict drawn (s)": drawn, "first Code it (s)": first_code, "server CPU (s)": cpu,
            "server peak (MB)": peak}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    for repeat in range(args.repeats):
        figures = one_run(args.root.resolve())
        print(f"{args.root} run {repeat + 1}: " + " · ".join(f"{k} {v:.1f}" for k, v in figures.items()), flush=True)


if __name__ == "__main__":
    main()
