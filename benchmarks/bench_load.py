"""Many participants at once: N sessions code and explain on the Predict page, one more trains.

Usage: uv run python benchmarks/bench_load.py --sessions 10 [--train [--warm-train]] [--rounds 5] [--label after]
       [--client browser|websocket] [--out benchmarks/load_results.md]
       [--url http://127.0.0.1:8501 --server-pid 1234 --server-cache DIR]

`--client browser` (the default) drives headless Chromium pages; `--client websocket` speaks Streamlit's own
protocol (`streamlit_client.py`): the same clicks, answers and checks, without ten browsers taking the cores that the
server is measured on. With it, an action is timed from the message sent to the end of the run it started, and
`--warm-train` lets the training session finish one untimed run first (a server's first run creates its MLflow
store).

Each session codes its own descriptions (no two sessions share one, so Streamlit's caches do not serve one
session's work to another): it types a description, presses "Code it" and waits until the page is idle with the
candidates and the highlights of the NEW text ("code"); then it picks the second candidate in "Explain candidate"
and waits for that code's highlights ("explain"). With `--train` one more session starts a small run on the
Train page (2,000 rows, 3 epochs) and starts another each time one ends, until the coding sessions are done
(the run going then may finish, for at most TRAIN_GRACE_S seconds, to be timed).

First a single session codes every description on a fresh server (the baseline, and the answers to compare);
then the load runs on another fresh server (or `--url`, e.g. a server started under a profiler). For every
description, the top code, its probability text and the highlighted words' scores must equal the baseline's.
Prints a table (action, n, p50, p95, max, errors) and appends it to `--out`. The browser client needs Debian's
chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from streamlit_client import StreamlitSession, titles  # beside this file

from nace_app.app.serving import CHROMIUM, CHROMIUM_ARGS, IDLE, AppServer

ACTIVITIES = (
    "I sell croissants and pains au chocolat in my bakery",
    "I develop business management software for companies",
    "I repair cars and carry out technical inspections",
    "wholesale of fresh fruit and vegetables to restaurants",
    "we rent out holiday cottages by the week",
    "installation of solar panels on private roofs",
    "dog grooming salon with a small pet shop",
    "manufacture of wooden pallets and crates",
    "taxi driver with my own car",
    "we build websites and mobile apps for small firms",
    "hairdresser and beauty salon",
    "plumbing and heating repairs for households",
)
PLACES = ("in Lyon", "near the station", "in a small village", "for the whole region", "since 1998")
WARM_UP = "bakery and pastry shop"  # in no session's list
TIMEOUT_MS = 300_000
TRAIN = "train (2,000 rows, 3 epochs)"
TRAIN_GRACE_S = 180
ENV = {"NACE_MODEL_URI": "embedded", "NACE_DATA_URI": "embedded"}

# True once the page is idle and shows `text`'s candidates and its highlights for `code` (any code when null):
# the highlighted text with its +/− marks removed is the typed text, so stale output of a previous run never counts.
SHOWN = """([text, code]) => {
  if (!document.querySelector("[data-testid='stApp'][data-test-script-state='notRunning']")) return false;
  const box = document.querySelector('.nace-highlight');
  if (!box) return false;
  const copy = box.cloneNode(true);
  copy.querySelectorAll('sup').forEach(s => s.remove());
  if (copy.textContent !== text) return false;
  const captions = [...document.querySelectorAll("[data-testid='stCaptionContainer']")].map(c => c.innerText);
  if (!captions.some(c => c.startsWith('Codes for: “' + text.slice(0, 120)))) return false;
  const bar = document.querySelector("[data-testid='stMain'] [data-testid='stProgress']");
  if (!bar || !bar.innerText.trim().endsWith('%')) return false;
  return code === null || captions.some(c => c.startsWith('Integrated gradients for ' + code + ' ·'));
}"""
# The best candidate (code, probability text of its bar), the codes offered to explain, and the highlighted words' labels ("word: +0.123").
ANSWER = """() => {
  const radio = document.querySelector("[data-testid='stRadioGroup'][aria-label='Explain candidate']");
  const codes = radio ? [...radio.querySelectorAll("[data-testid='stRadioOption']")].map(o => o.innerText.trim()) : [];
  const bar = document.querySelector("[data-testid='stMain'] [data-testid='stProgress']");
  const probability = bar ? bar.innerText.trim() : null;
  const words = [...document.querySelectorAll('.nace-highlight .nace-word')].map(w => w.getAttribute('title'));
  return {code: codes[0] ?? null, probability, codes, words};
}"""


PAGE_STATE = """() => ({
  script: document.querySelector("[data-testid='stApp']")?.getAttribute('data-test-script-state'),
  typed: document.querySelector("textarea[aria-label='Activity description']")?.value,
  captions: [...document.querySelectorAll("[data-testid='stCaptionContainer']")].map(c => c.innerText.slice(0, 80))
    .filter(c => c.startsWith('Codes for') || c.startsWith('Integrated')),
  exceptions: [...document.querySelectorAll("[data-testid='stException']")].map(e => e.innerText.slice(0, 200)),
})"""


def descriptions(sessions: int, rounds: int) -> list[list[str]]:
    """`rounds` distinct descriptions per session, no description in two sessions."""
    every = [f"{activity} {place}" for place in PLACES for activity in ACTIVITIES]
    if sessions * rounds > len(every):
        raise SystemExit(f"at most {len(every)} distinct descriptions: lower --sessions or --rounds")
    return [every[s * rounds:(s + 1) * rounds] for s in range(sessions)]


@dataclass
class Record:
    times: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    answers: dict[str, dict] = field(default_factory=dict)  # description -> {code, probability, words, explained}

    def add(self, action: str, seconds: float) -> None:
        self.times.setdefault(action, []).append(seconds)

    def fail(self, action: str, message: str) -> None:
        self.errors.setdefault(action, []).append(message)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads, in seconds (clock ticks of 1/100 s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def chromium_cpu() -> dict[int, float]:
    """CPU seconds of each Chromium process on the machine (run the benchmark on a quiet machine): Chromium's
    renderers are forked by its zygote, which leaves the process tree, so this benchmark's descendants miss them."""
    seen = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and "chrom" in (entry / "comm").read_text():
                seen[int(entry.name)] = cpu_seconds(int(entry.name))
        except OSError:  # the process ended meanwhile
            continue
    return seen


class BrowserCpu:
    """The browsers' CPU seconds over a phase, sampled twice a second: a renderer that exits keeps its last count."""

    def __init__(self) -> None:
        self.start = chromium_cpu()
        self.last = dict(self.start)

    def sample(self) -> None:
        self.last.update(chromium_cpu())

    def seconds(self) -> float:
        return sum(cpu - self.start.get(pid, 0.0) for pid, cpu in self.last.items())


async def new_page(browser):
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


async def idle(page) -> None:
    await page.wait_for_timeout(300)
    await page.wait_for_selector(IDLE)


async def page_state(page) -> str:
    """What the page showed when an action failed, for the report."""
    try:
        return str(await page.evaluate(PAGE_STATE))
    except Exception as exc:  # the page itself is gone
        return f"unreadable: {type(exc).__name__}"


async def code_and_explain(page, text: str, record: Record, stage: list[str]) -> None:
    """One round: code `text`, then explain its second candidate; both timed, the answers kept."""
    stage[0] = "code"
    box = page.locator("textarea[aria-label='Activity description']")
    await box.fill(text)
    started = time.perf_counter()
    await page.get_by_role("button", name="Code it").click()
    await page.wait_for_function(SHOWN, arg=[text, None], polling=50)
    record.add("code", time.perf_counter() - started)
    answer = await page.evaluate(ANSWER)
    if len(answer["codes"]) < 2:
        record.answers[text] = answer
        return
    second = answer["codes"][1]
    radio = page.locator("[data-testid='stRadio']").filter(has_text="Explain candidate")
    stage[0] = "explain"
    started = time.perf_counter()
    await radio.get_by_text(second, exact=True).click()
    await page.wait_for_function(SHOWN, arg=[text, second], polling=50)
    record.add("explain", time.perf_counter() - started)
    explained = await page.evaluate(ANSWER)
    record.answers[text] = {**answer, "explained": second, "explained_words": explained["words"]}


async def coding_session(browser, url: str, texts: list[str], record: Record, ready: list[str],
                         start: asyncio.Event) -> None:
    page = await new_page(browser)
    stage = ["code"]
    try:
        await page.goto(f"{url}/")
        await idle(page)
        ready.append("coding")
        await start.wait()
        for text in texts:
            try:
                await code_and_explain(page, text, record, stage)
            except Exception as exc:  # a timeout or a page error: counted with what the page showed, and the session goes on
                record.fail(stage[0], f"{text!r}: {type(exc).__name__}: {str(exc).splitlines()[0]} (page: "
                                      f"{await page_state(page)})")
                await page.goto(f"{url}/")
                await idle(page)
    finally:
        await page.context.close()


async def training_session(browser, url: str, record: Record, ready: list[str], start: asyncio.Event,
                           finishing: asyncio.Event) -> None:
    """Small runs one after the other until `finishing`; each timed from "Start training" to "Use this model"."""
    page = await new_page(browser)
    try:
        await page.goto(f"{url}/train")
        await idle(page)
        rows = page.get_by_label("Subsample of the train split (rows)")
        await rows.fill("2000")
        await rows.press("Enter")
        await idle(page)
        epochs = page.get_by_role("slider", name="Epochs")
        await epochs.focus()
        for _ in range(10):
            await epochs.press("ArrowLeft")
        for _ in range(2):
            await epochs.press("ArrowRight")
        await idle(page)
        ready.append("training")
        await start.wait()
        while True:
            before = page.url
            started = time.perf_counter()
            try:
                await page.get_by_role("button", name="Start training").click()
                await page.wait_for_url(lambda now, before=before: now != before and "job=" in now)
                await idle(page)  # the new job's page drawn: the last run's "Use this model" is gone, not matched
                await page.get_by_role("button", name="Use this model").wait_for()
                record.add(TRAIN, time.perf_counter() - started)
            except Exception as exc:  # not a cancellation: that is the end of the coding phase
                record.fail(TRAIN, f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
                return
            if finishing.is_set():
                return
            await idle(page)
    finally:
        await page.context.close()


async def warm_up(browser, url: str) -> None:
    """One description coded and explained before the timed phase: first-use work (calibration, caches) is not load."""
    page = await new_page(browser)
    await page.goto(f"{url}/")
    await idle(page)
    await code_and_explain(page, WARM_UP, Record(), ["code"])
    await page.context.close()


async def ws_code_and_explain(session: StreamlitSession, text: str, record: Record, stage: list[str]) -> None:
    """`code_and_explain` over the websocket: each action timed from the message sent to the end of its run."""
    stage[0] = "code"
    session.set("text_area", "Activity description", "string_value", text)
    started = time.perf_counter()
    await session.rerun(trigger=session.widget("button", "Code it").proto.id)
    record.add("code", time.perf_counter() - started)
    answer = ws_answer(session, text, None)
    if len(answer["codes"]) < 2:
        record.answers[text] = answer
        return
    second = answer["codes"][1]
    radio = session.widget("radio", "Explain candidate")
    session.values[radio.proto.id] = ("string_value", second)
    stage[0] = "explain"
    started = time.perf_counter()
    await session.rerun(fragment_id=radio.fragment_id)
    record.add("explain", time.perf_counter() - started)
    explained = ws_answer(session, text, second)
    record.answers[text] = {**answer, "explained": second, "explained_words": explained["words"]}


def ws_answer(session: StreamlitSession, text: str, code: str | None) -> dict:
    """What `ANSWER` reads in a browser, read from the run's elements; an error when they are not `SHOWN`'s."""
    captions = [shown.proto.body for shown in session.of_kind("markdown")]
    highlights = [shown.proto.body for shown in session.of_kind("html") if "nace-highlight" in shown.proto.body]
    bars = [shown.proto.text for path, shown in sorted(session.elements.items()) if shown.kind == "progress" and path[0] == 0]
    if not highlights or not bars or not any(c.startswith("Codes for: “" + text[:120]) for c in captions):
        raise RuntimeError(f"the run did not show {text!r}'s codes and highlights")
    if code is not None and not any(c.startswith(f"Integrated gradients for **{code}** ·") for c in captions):
        raise RuntimeError(f"the run did not explain {code}")
    codes = list(session.widget("radio", "Explain candidate").proto.options)
    return {"code": codes[0] if codes else None, "probability": bars[0], "codes": codes,
            "words": titles(highlights[0], "nace-word")}


async def ws_coding_session(url: str, texts: list[str], record: Record, ready: list[str], start: asyncio.Event) -> None:
    session = StreamlitSession(url, TIMEOUT_MS / 1000)
    stage = ["code"]
    await session.open()
    try:
        ready.append("coding")
        await start.wait()
        for text in texts:
            try:
                await ws_code_and_explain(session, text, record, stage)
            except Exception as exc:  # a timeout or a wrong page: counted, and the session goes on from a new one
                record.fail(stage[0], f"{text!r}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                await session.close()
                session = StreamlitSession(url, TIMEOUT_MS / 1000)
                await session.open()
    finally:
        await session.close()


async def ws_train_once(session: StreamlitSession) -> None:
    """Start a run and poll the progress fragment, as often as it asks, until the page offers the model."""
    await session.rerun(trigger=session.widget("button", "Start training").proto.id)
    while not any(b.proto.label.startswith("Use this model") for b in session.of_kind("button")):
        if not await session.poll():
            raise RuntimeError("the run's page stopped polling without offering its model")


async def ws_training_session(url: str, record: Record, ready: list[str], start: asyncio.Event,
                              finishing: asyncio.Event, warm: bool) -> None:
    """`training_session` over the websocket; with `warm`, one untimed run first (the server's first run imports
    MLflow and creates its store)."""
    session = StreamlitSession(url, TIMEOUT_MS / 1000)
    await session.open("train")
    try:
        session.set("number_input", "Subsample of the train split (rows)", "int_value", 2000)
        session.set("slider", "Epochs", "double_array_value", [3.0])
        await session.rerun()
        if warm:
            await ws_train_once(session)
        ready.append("training")
        await start.wait()
        while True:
            started = time.perf_counter()
            try:
                await ws_train_once(session)
                record.add(TRAIN, time.perf_counter() - started)
            except Exception as exc:
                record.fail(TRAIN, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                return
            if finishing.is_set():
                return
    finally:
        await session.close()


async def ws_warm_up(url: str) -> None:
    """`warm_up`, then its page polled as a browser polls it until the similar examples are ready: the sessions'
    pages then poll nothing, and the client needs no timers beside their clicks."""
    session = StreamlitSession(url, TIMEOUT_MS / 1000)
    await session.open()
    await ws_code_and_explain(session, WARM_UP, Record(), ["code"])
    deadline = time.perf_counter() + TIMEOUT_MS / 1000
    while time.perf_counter() < deadline and await session.poll():
        continue
    await session.close()


async def run_sessions(url: str, texts: list[list[str]], train: bool, pid: int | None,
                       client: str, warm_train: bool = False) -> tuple[Record, float, float, float]:
    """All sessions against `url` by `client`; the record, and the coding phase's wall time, the server's and the
    clients' (browsers' or this process's) CPU seconds."""
    record = Record()
    ready: list[str] = []
    start, finishing = asyncio.Event(), asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        if client == "browser":
            from playwright.async_api import async_playwright

            playwright = await stack.enter_async_context(async_playwright())
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            stack.push_async_callback(browser.close)
            await warm_up(browser, url)
            coders = [asyncio.create_task(coding_session(browser, url, own, record, ready, start)) for own in texts]
            trainer = (asyncio.create_task(training_session(browser, url, record, ready, start, finishing))
                       if train else None)
        else:
            await ws_warm_up(url)
            coders = [asyncio.create_task(ws_coding_session(url, own, record, ready, start)) for own in texts]
            trainer = (asyncio.create_task(ws_training_session(url, record, ready, start, finishing, warm_train))
                       if train else None)
        sessions = [*coders, trainer] if trainer else coders
        while len(ready) < len(sessions) and not any(task.done() for task in sessions):
            await asyncio.sleep(0.2)  # every page loaded first: the timed phase measures coding, not start-up
        cpu, browsers, own_cpu = cpu_seconds(pid) if pid else 0.0, BrowserCpu(), time.process_time()
        started = time.perf_counter()
        start.set()
        coding = asyncio.gather(*coders)
        while not coding.done():
            browsers.sample()
            await asyncio.wait([coding], timeout=0.5)
        await coding
        wall = time.perf_counter() - started
        client_cpu = browsers.seconds() if client == "browser" else time.process_time() - own_cpu
        cpu = (cpu_seconds(pid) - cpu) if pid else float("nan")
        if trainer is not None:  # the run still going may finish (alone, at most TRAIN_GRACE_S more), then it stops
            finishing.set()
            try:
                await asyncio.wait_for(trainer, TRAIN_GRACE_S)
            except TimeoutError:
                record.fail(TRAIN, f"a run was still going {TRAIN_GRACE_S} s after the coding sessions ended")
    return record, wall, cpu, client_cpu


def run_timings(cache: Path | None) -> list[str]:
    """What each training run of the server took in its child process, from the run's result.json."""
    found = []
    for result in sorted((cache / "runs").glob("*/result.json")) if cache else []:
        timing = json.loads(result.read_text())["timing"]
        wall = sum(timing[phase] for phase in ("startup", "prepare", "train", "finish"))
        found.append(f"{wall:.1f} s ({timing['startup']:.1f} + {timing['prepare']:.1f} + {timing['train']:.1f} + "
                     f"{timing['finish']:.1f}; CPU {timing['startup_cpu'] + timing['cpu']:.1f})")
    return found


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def spread(values: list[float]) -> str:
    if not values:
        return "no timings"
    return f"p50 {statistics.median(values):.2f} s, p95 {percentile(values, 0.95):.2f} s"


def table(record: Record) -> list[str]:
    lines = ["| action | n | p50 (s) | p95 (s) | max (s) | errors |", "|---|---|---|---|---|---|"]
    for action in sorted(set(record.times) | set(record.errors)):
        values = record.times.get(action, [])
        numbers = (f"{statistics.median(values):.2f} | {percentile(values, 0.95):.2f} | {max(values):.2f}"
                   if values else "– | – | –")
        lines.append(f"| {action} | {len(values)} | {numbers} | {len(record.errors.get(action, []))} |")
    return lines


def differences(baseline: Record, load: Record) -> list[str]:
    """Descriptions whose answer under load is not the single session's (top code, its probability, words)."""
    found = []
    for text, answer in load.answers.items():
        expected = baseline.answers.get(text)
        if expected is None:
            found.append(f"{text!r}: no baseline answer")
        elif answer != expected:
            changed = [key for key in answer if answer.get(key) != expected.get(key)]
            found.append(f"{text!r}: {', '.join(changed)} differ ({answer['code']} {answer['probability']} against "
                         f"{expected['code']} {expected['probability']})")
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--train", action="store_true", help="one more session trains on the Train page")
    parser.add_argument("--label", default="", help="a name for this run in the results file, e.g. before/after")
    parser.add_argument("--url", help="run the load against this server instead of a fresh one")
    parser.add_argument("--server-pid", type=int, help="with --url: that server's process id, for its CPU time")
    parser.add_argument("--server-cache", type=Path, help="with --url: that server's cache folder, for its runs' timings")
    parser.add_argument("--client", choices=("browser", "websocket"), default="browser",
                        help="sessions in headless Chromium, or over Streamlit's websocket with no browser (the "
                             "server's latency, without the browsers' CPU)")
    parser.add_argument("--warm-train", action="store_true",
                        help="with --client websocket: one untimed training run before the timed phase")
    parser.add_argument("--no-baseline", action="store_true", help="skip the single session (and the comparison)")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment of both servers, e.g. OMP_NUM_THREADS=1")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "load_results.md")
    args = parser.parse_args()
    if args.warm_train and not (args.train and args.client == "websocket"):
        parser.error("--warm-train goes with --train and --client websocket")
    texts = descriptions(args.sessions, args.rounds)
    work = Path(tempfile.mkdtemp(prefix="nace-load-bench-"))
    env = {**ENV, **dict(pair.split("=", 1) for pair in args.server_env)}

    baseline = Record()
    if not args.no_baseline:
        server = AppServer({**env, "NACE_CACHE_DIR": str(work / "baseline-cache")}, work / "baseline.log")
        try:
            baseline, *_ = asyncio.run(run_sessions(server.url, [[t for own in texts for t in own]], False, None,
                                                    args.client))
        finally:
            server.stop()

    server = None if args.url else AppServer({**env, "NACE_CACHE_DIR": str(work / "load-cache")}, work / "load.log")
    try:
        load, wall, cpu, client_cpu = asyncio.run(run_sessions(args.url or server.url, texts, args.train,
                                                   server.process.pid if server else args.server_pid, args.client,
                                                   args.warm_train))
    finally:
        if server is not None:
            server.stop()

    changed = differences(baseline, load) if not args.no_baseline else []
    runs = run_timings(args.server_cache if args.url else work / "load-cache")
    codes = baseline.times.get("code", [])
    explains = baseline.times.get("explain", [])
    scenario = (f"{args.sessions} session{'s' if args.sessions > 1 else ''}" + (" + 1 training" if args.train else "")
                + (" (after one untimed run)" if args.warm_train else ""))
    extra = f" Server environment: {' '.join(args.server_env)}." if args.server_env else ""
    lines = [f"### {args.label + ': ' if args.label else ''}{scenario}, {args.rounds} rounds each",
             "", f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
             f"{time.strftime('%Y-%m-%d %H:%M')}; load average {os.getloadavg()[1]:.1f} (5 min).{extra} Coding phase: "
             f"{wall:.1f} s wall, CPU {cpu:.1f} s server and {client_cpu:.1f} s "
             f"{'browsers' if args.client == 'browser' else 'websocket client (no browser)'}.", ""]
    lines += table(load)
    if runs:
        lines += ["", "Each training run in its own process (start-up + prepare + train + finish, wall s; CPU s): "
                  + "; ".join(runs) + ". The rest of a run's time in the table is the server's and its client's."]
    if not args.no_baseline:
        lines += ["", f"Single-session baseline ({len(codes)} descriptions, one after the other): code {spread(codes)}; "
                  f"explain {spread(explains)}; baseline errors {sum(len(v) for v in baseline.errors.values())}.",
                  f"Answers equal to the single session's (top code, probability text, highlighted word scores): "
                  f"{len(load.answers) - len(changed)} of {len(load.answers)}."]
    for problem in changed + [f"{phase} {action}: {message}" for phase, record in (("baseline", baseline), ("load", load))
                              for action, messages in record.errors.items() for message in messages]:
        lines.append(f"- {problem}")
    report = "\n".join(lines) + "\n"
    print(report)
    with args.out.open("a") as results:
        results.write("\n" + report)


if __name__ == "__main__":
    main()
