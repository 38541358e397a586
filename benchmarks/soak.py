"""Memory over a long day: distinct prompts through every page, from one session and from ten.

    python -m benchmarks.soak [--prompts 200] [--sessions 10] [--out benchmarks/results/soak-cpu.json]

One server (``python -m app.serve``). Phase 1: one Chromium session types ``prompts`` distinct
prompts, moving to the next page of the dashboard after each one (pages without a prompt, the
training lab and the inspector, are visited on the way). Phase 2: ``sessions`` sessions at once
type another ``prompts`` distinct prompts between them, each on its own page. After every step the
server's resident memory (VmRSS) is read, and every few steps Streamlit's own accounting of what
its caches and session states hold (``/_stcore/metrics``, ``cache_memory_bytes``), so the curve
shows what grows and what stops growing.
"""

from __future__ import annotations

import argparse
import re
import time
import urllib.request
from collections import defaultdict

from benchmarks import live
from benchmarks.harness import cpu_run_header, write_results

# (nav link, page title, takes a prompt)
PAGES = [
    ("Compare", "Compare models", True),
    ("Depth routing", "Depth routing", True),
    ("Signal dilution", "Signal dilution", True),
    ("Retrieval", "Retrieval", True),
    ("Attribution & ablation", "Attribution & ablation", True),
    ("Logit lens", "Logit lens", True),
    ("Training dynamics", "Training dynamics", True),
    ("Training lab", "Training lab", False),
    ("Learn: signal dilution", "Learn: signal dilution", True),
    ("Checkpoint inspector", "Checkpoint inspector", False),
]
WORDS = ("king queen love death night sword crown ghost storm heart blood fool wind fire honour "
         "grave star moon sea sleep dream friend enemy").split()  # fmt: skip
METRIC = re.compile(r'^cache_memory_bytes\{cache_type="([^"]*)",cache="([^"]*)"\} (\S+)$')
METRICS_EVERY = 10  # steps between two readings of /_stcore/metrics


def prompt(i: int) -> str:
    """The i-th distinct prompt: 40-80 characters of the models' vocabulary."""
    words = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(6 + i % 5)]
    return f"{i}: " + " ".join(words).capitalize() + "."


def cache_bytes(server: live.Server) -> dict[str, float]:
    """MiB Streamlit accounts to each kind of cache (summed over functions / sessions)."""
    with urllib.request.urlopen(f"{server.url}/_stcore/metrics", timeout=120) as response:
        text = response.read().decode()
    totals = defaultdict(float)
    for line in text.splitlines():
        match = METRIC.match(line)
        if match:
            kind, cache, value = match.groups()
            key = kind if kind != "st_cache_data" else f"st_cache_data:{cache.rsplit('.', 1)[-1]}"
            totals[key] += float(value) / 2**20
    return dict(totals)


def _go(page, link: str, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=link, exact=True).click()
    page.wait_for_function("t => document.querySelector('h1')?.innerText === t", arg=title, timeout=600_000)
    live.settled(page)


def _sample(server, rows: list, phase: str, step: int, started: float, what: str) -> None:
    row = {"phase": phase, "step": step, "what": what, "rss_mb": round(server.rss_mb(), 1),
           "elapsed_s": round(time.perf_counter() - started, 1), "load1": live.load1()}  # fmt: skip
    if step % METRICS_EVERY == 0:
        row["cache_mb"] = {k: round(v, 2) for k, v in cache_bytes(server).items()}
    rows.append(row)
    print(row, flush=True)


def one_session(browser, server, prompts: int, rows: list) -> None:
    """One session: prompt i on page i (every page in turn)."""
    page = live.new_page(browser)
    page.goto(server.url, timeout=600_000)
    live.settled(page)
    started, done, i = time.perf_counter(), 0, 0
    while done < prompts:
        link, title, takes_prompt = PAGES[i % len(PAGES)]
        _go(page, link, title)
        if takes_prompt:
            text = prompt(done)
            live.submit_prompt(page, text)
            live.wait_prompt_done(page, text)
            done += 1
        _sample(server, rows, "1 session", done, started, link)
        i += 1
    page.context.close()


def many_sessions(browser, server, prompts: int, sessions: int, rows: list) -> None:
    """``sessions`` sessions at once, each on its own page, typing distinct prompts in rounds."""
    pages = [live.new_page(browser) for _ in range(sessions)]
    for page in pages:
        page.goto(server.url, wait_until="commit", timeout=600_000)
    for page in pages:
        live.settled(page)
    with_prompt = [p for p in PAGES if p[2]]
    started, done, rnd = time.perf_counter(), 0, 0
    while done < prompts:
        batch = list(zip(pages, range(done, min(done + sessions, prompts)), strict=False))
        for k, (page, _) in enumerate(batch):
            link, title, _ = with_prompt[(rnd + k) % len(with_prompt)]
            _go(page, link, title)
        for page, n in batch:
            live.submit_prompt(page, prompt(10_000 + n))
        for page, n in batch:
            live.wait_prompt_done(page, prompt(10_000 + n))
        done += len(batch)
        rnd += 1
        _sample(server, rows, f"{sessions} sessions", done, started, f"round {rnd}")
    for page in pages:
        page.context.close()


def measure(prompts: int, sessions: int) -> dict:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 (optional dependency)

    result = {**cpu_run_header(), "benchmark": "soak", "prompts": prompts, "sessions": sessions}
    server = live.Server("serve")
    rows: list[dict] = []
    try:
        result["health_s"] = server.wait_healthy()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=live.CHROMIUM, args=live.CHROMIUM_ARGS)
            _sample(server, rows, "start", 0, time.perf_counter(), "healthy")
            one_session(browser, server, prompts, rows)
            many_sessions(browser, server, prompts, sessions, rows)
            browser.close()
        time.sleep(5)
        _sample(server, rows, "end", 0, time.perf_counter(), "sessions closed")
        result["tracebacks"] = server.tracebacks()
    finally:
        server.stop()
    result["rows"] = rows
    return result


def _curve(rows: list[dict]) -> list[str]:
    lines = ["| phase | prompts so far | RSS MiB | elapsed s | load1 | Streamlit caches (MiB) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        if "cache_mb" not in r:
            continue
        caches = ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["cache_mb"].items()) if v >= 0.05)
        lines.append(f"| {r['phase']} | {r['step']} | {r['rss_mb']:.0f} | {r['elapsed_s']:.0f} | "
                     f"{r['load1']:.1f} | {caches} |")  # fmt: skip
    return lines


def render(result: dict) -> str:
    rows = result["rows"]
    lines = [
        f"# Soak: server memory over {result['prompts']} prompts x 2 phases — {result['device']}",
        "",
        f"{result['date']}, torch {result['torch']}; phase 1 one session, phase 2 {result['sessions']} "
        f"sessions at once; every page in turn. Tracebacks in the server log: {result.get('tracebacks')}.",
        "",
        "RSS after every step is in the JSON; the table shows every "
        f"{METRICS_EVERY}th step, with what Streamlit accounts to its caches (`/_stcore/metrics`).",
        "",
        *_curve(rows),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--out", default=str(live.ROOT / "benchmarks" / "results" / "soak-cpu.json"))
    args = parser.parse_args(argv)
    print(write_results(measure(args.prompts, args.sessions), args.out, render))


if __name__ == "__main__":
    main()
