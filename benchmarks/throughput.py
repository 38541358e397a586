"""A prompt change on the Compare page with one session and with ten at once, side by side.

    python -m benchmarks.throughput [--changes 5] [--sessions 10] [--out DIR/throughput-cpu.json]

One server (``python -m app.serve``), the home page open in every session. Three phases in one run:
``1 session`` types ``changes`` distinct prompts one after the other; ``N distinct`` has N sessions
type a distinct prompt each at the same moment, ``changes`` rounds; ``N identical`` has N sessions
type the same new prompt at the same moment (identical requests: Streamlit's cache computes each
once and the other sessions wait for it). A change is timed from its Ctrl+Enter to the run it
started having finished with both charts drawn. Per phase: the median change, and the server's
CPU seconds per prompt (one round's CPU time over the prompts it computed), which says how much
of the wait is computing and what 2 cores allow.
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks import live
from benchmarks.harness import cpu_run_header, write_results

CHARTS = 2


def prompt(tag: str, i: int) -> str:
    return f"{tag} {i}: So quick bright things come to confusion, and all our yesterdays."


def _round(server, pages, texts) -> tuple[list[float], float]:
    """Submits ``texts[k]`` in ``pages[k]`` at once; seconds until each is done, and server CPU s."""
    cpu = server.cpu_s()
    starts = []
    for page, text in zip(pages, texts, strict=True):
        starts.append(time.perf_counter())
        live.submit_prompt(page, text)
    ends = []
    for page, text in zip(pages, texts, strict=True):
        live.wait_prompt_done(page, text)
        live.wait_charts(page, CHARTS)
        ends.append(time.perf_counter())
    return [e - s for s, e in zip(starts, ends, strict=True)], server.cpu_s() - cpu


def _phase(server, pages, name: str, rounds: list[list[str]]) -> dict:
    times, cpus, loads = [], [], []
    for texts in rounds:
        loads.append(live.load1())
        took, cpu = _round(server, pages, texts)
        times += took
        cpus.append(cpu / len(set(texts)))
    return {"phase": name, "sessions": len(pages), "median_s": statistics.median(times), "times_s": times,
            "server_cpu_s_per_prompt": statistics.median(cpus), "load1": loads}  # fmt: skip


def measure(changes: int, sessions: int) -> dict:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 (optional dependency)

    result = {**cpu_run_header(), "benchmark": "throughput", "changes": changes, "sessions": sessions}
    server = live.Server("serve")
    try:
        result["health_s"] = server.wait_healthy()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=live.CHROMIUM, args=live.CHROMIUM_ARGS)
            pages = [live.new_page(browser) for _ in range(sessions)]
            for page in pages:
                page.goto(server.url, timeout=600_000)
                live.wait_charts(page, CHARTS)
                live.settled(page)
            one = [[prompt("one", i)] for i in range(changes)]
            distinct = [[prompt(f"s{k}", i) for k in range(sessions)] for i in range(changes)]
            same = [[prompt("all", i)] * sessions for i in range(changes)]
            result["phases"] = [
                _phase(server, pages[:1], "1 session", one),
                _phase(server, pages, f"{sessions} distinct", distinct),
                _phase(server, pages, f"{sessions} identical", same),
            ]
            browser.close()
        result["tracebacks"] = server.tracebacks()
    finally:
        server.stop()
    return result


def render(result: dict) -> str:
    lines = [
        f"# Prompt change on Compare: 1 session vs {result['sessions']} at once — {result['device']}",
        "",
        f"{result['date']}, torch {result['torch']}, {result['threads']} threads; {result['changes']} rounds "
        f"per phase; tracebacks in the server log: {result.get('tracebacks')}.",
        "",
        "| phase | sessions | median change (s) | server CPU s per prompt computed | load1 |",
        "|---|---|---|---|---|",
    ]
    for p in result["phases"]:
        loads = f"{min(p['load1']):.1f}-{max(p['load1']):.1f}"
        lines.append(f"| {p['phase']} | {p['sessions']} | {p['median_s']:.2f} | "
                     f"{p['server_cpu_s_per_prompt']:.2f} | {loads} |")  # fmt: skip
    lines += [
        "",
        "A change is timed from Ctrl+Enter to its run finished with both charts drawn. `identical`: every "
        "session types the same new prompt at once; its CPU per prompt counts that prompt once.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--out", default=str(live.ROOT / "benchmarks" / "results" / "throughput-cpu.json"))
    args = parser.parse_args(argv)
    print(write_results(measure(args.changes, args.sessions), args.out, render))


if __name__ == "__main__":
    main()
