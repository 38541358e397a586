"""Where the cold first view of the Compare page spends its time, measured in Chromium.

    python -m benchmarks.first_view [--repeats 3] [--out benchmarks/results/first_view-cpu.json]

1. The server side, step by step, in a fresh Python process each repeat: the imports, loading the
   three shipped models, the home page's probes and losses on the default prompt, building its two
   plotly figures and serialising them to JSON.
2. Chromium against a fresh server, started with ``python -m app.serve`` (warms up at start) and with
   plain ``streamlit run`` (does not): seconds from process start to ``/_stcore/health``, then from
   healthy to the first chart drawn and to both charts drawn. The page is opened the moment the
   server answers healthy. In the page, when the first chart element appeared and when plotly had
   drawn it (browser drawing), and when the page's JavaScript had loaded.
3. The same view in a second, fresh browser session on the now-warm server: what is left without
   imports and computation (the script run, building the figures, sending and drawing them).
4. The floor: a trivial Streamlit page with two tiny plotly charts and no torch
   (``benchmarks/floor_app.py``), timed the same way. What Streamlit, plotly.js and Chromium take
   here whatever the page does; the dashboard's time above it is ours.

Target: first chart <= 2.5 s after healthy. Every timing carries the 1-minute load average: this
machine's 2 cores are shared, so medians of several repeats are reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from benchmarks import live
from benchmarks.harness import cpu_run_header, write_results

TARGET_S = 2.5
CHARTS = 2  # the Compare page: depth-weight heatmaps, norm growth (the floor page draws two as well)
# how each server is started: the dashboard two ways, and the floor page
SERVERS = {**live.COMMANDS, "floor": [sys.executable, "-m", "streamlit", "run", "benchmarks/floor_app.py"]}
STEPS_SCRIPT = r"""
import json, os, time
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
out, t = {}, time.perf_counter()
def lap(key):
    global t
    now = time.perf_counter(); out[key] = now - t; t = now
import torch; lap("import torch")
import streamlit; lap("import streamlit")
import pandas, pyarrow; lap("import pandas, pyarrow")
import plotly.graph_objects, plotly.io; lap("import plotly")
import app.warm; lap("import the Compare page's (app, probes, figures; plotly's first figure)")
import figures, probes
from app import common, models
entries = list(models.shipped_entries().values())[:3]
loaded = [models._load_cpu(e.path, e.key) for e in entries]; lap("load the 3 models")
text = common.DEFAULT_PROMPT
traces = [probes.trace(m, text) for m in loaded]
res = {n: [probes.PROBES[n](m, t) for m, t in zip(loaded, traces)] for n in common.COMPARE_PROBES}
lap("probes + losses (3 models, one trace each)")
names = [e.name for e in entries]
figs = [figures.depth_heatmaps(res["depth_weights"], names, "all"),
        figures.norm_growth_chart(res["stream_norms"], names)]
figures.retrieval_summary(res["depth_retrieval"], names); lap("build the figures and table")
[plotly.io.to_json(f, validate=False) for f in figs]; lap("serialise the figures (plotly JSON)")
app.warm.import_the_rest(); lap("import what only other pages need (captum, kaleido, scipy.stats)")
print(json.dumps(out))
"""
# In the page: when the first chart element appeared and when plotly had drawn a trace into it.
MARKS_JS = """(() => {
  const seen = () => {
    const el = document.querySelector('[data-testid="stPlotlyChart"]');
    if (el && window.__chartElement === undefined) window.__chartElement = performance.now();
    if (el && el.querySelector('svg.main-svg') && el.querySelectorAll('g.trace, g.hm').length
        && window.__chartDrawn === undefined) window.__chartDrawn = performance.now();
  };
  new MutationObserver(seen).observe(document, {childList: true, subtree: true});
})();"""
MARKS_READ_JS = """() => ({element: window.__chartElement, drawn: window.__chartDrawn,
  dom: performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd})"""


def server_steps(repeats: int) -> list[dict]:
    """Seconds of each server-side step in a fresh process, one dict per repeat."""
    runs = []
    for _ in range(repeats):
        load = live.load1()
        done = subprocess.run([sys.executable, "-c", STEPS_SCRIPT], cwd=live.ROOT, capture_output=True,
                              text=True, check=True, timeout=600)  # fmt: skip
        runs.append({"steps_s": json.loads(done.stdout.strip().splitlines()[-1]), "load1": load})
    return runs


def _open_and_time(browser, url: str, t0: float) -> dict:
    """Opens ``url`` in a fresh session; seconds after ``t0`` to the first and to every chart drawn."""
    context = browser.new_context(viewport=live.VIEWPORT)
    context.add_init_script(MARKS_JS)
    page = context.new_page()
    start = time.perf_counter()
    page.goto(url, wait_until="commit", timeout=600_000)
    live.wait_charts(page, 1)
    first = time.perf_counter()
    live.wait_charts(page, CHARTS)
    every = time.perf_counter()
    live.settled(page)
    marks = page.evaluate(MARKS_READ_JS)
    context.close()
    return {
        "first_chart_s": first - t0,
        "all_charts_s": every - t0,
        "navigation_to_first_chart_s": first - start,
        "page_js_loaded_s": marks["dom"] / 1000,
        "browser_drawing_s": (marks["drawn"] - marks["element"]) / 1000,
    }


def cold_view(browser, how: str) -> dict:
    """A fresh server started ``how``; the Compare page opened the moment it answers healthy."""
    server = live.Server(how, command=SERVERS[how])
    try:
        load = live.load1()
        health = server.wait_healthy()
        t_healthy = time.perf_counter()
        cold = _open_and_time(browser, server.url, t_healthy)
        cold_cpu = server.cpu_s()
        warm = _open_and_time(browser, server.url, time.perf_counter())
        return {"how": how, "load1": load, "load1_after": live.load1(), "health_s": health,
                "cold": cold, "server_cpu_s_at_first_view": cold_cpu, "warm": warm,
                "tracebacks": server.tracebacks()}  # fmt: skip
    finally:
        server.stop()


def _median(runs: list[dict], *keys: str) -> float:
    values = []
    for run in runs:
        for key in keys:
            run = run[key]
        values.append(run)
    return statistics.median(values)


def summarise(steps: list[dict], views: list[dict]) -> dict:
    step_names = list(steps[0]["steps_s"])
    summary = {
        "server_steps_median_s": {k: statistics.median(r["steps_s"][k] for r in steps) for k in step_names}
    }
    for how in SERVERS:
        runs = [v for v in views if v["how"] == how]
        summary[how] = {
            "health_s": _median(runs, "health_s"),
            "first_chart_after_healthy_s": _median(runs, "cold", "first_chart_s"),
            "all_charts_after_healthy_s": _median(runs, "cold", "all_charts_s"),
            "browser_drawing_s": _median(runs, "cold", "browser_drawing_s"),
            "page_js_loaded_s": _median(runs, "cold", "page_js_loaded_s"),
            "warm_first_chart_s": _median(runs, "warm", "navigation_to_first_chart_s"),
            "warm_all_charts_s": _median(runs, "warm", "all_charts_s"),
        }
    summary["above_floor_s"] = _above_floor(summary)
    met = summary["serve"]["first_chart_after_healthy_s"] <= TARGET_S
    summary["target"] = {"limit_s": TARGET_S, "measured_s": summary["serve"]["first_chart_after_healthy_s"],
                         "met": met}  # fmt: skip
    return summary


def measure(repeats: int) -> dict:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 (optional dependency)

    result = {**cpu_run_header(), "benchmark": "first_view", "repeats": repeats, "load1_start": live.load1()}
    result["server_steps"] = server_steps(repeats)
    views = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=live.CHROMIUM, args=live.CHROMIUM_ARGS)
        for _ in range(repeats):
            for how in SERVERS:  # interleaved, so the machine's load hits them alike
                views.append(cold_view(browser, how))
        browser.close()
    result["views"] = views
    result["summary"] = summarise(result["server_steps"], views)
    result["load1_end"] = live.load1()
    return result


VIEW_COLUMNS = ("health_s", "first_chart_after_healthy_s", "all_charts_after_healthy_s", "page_js_loaded_s",
                "browser_drawing_s", "warm_first_chart_s", "warm_all_charts_s")  # fmt: skip
VIEW_NOTE = (
    "`page JS loaded`: navigation to DOMContentLoaded; `browser drawing`: the first chart element appearing "
    "to plotly having drawn it; `warm server`: a second fresh browser session, once the first has been "
    "served (no imports, no computation left)."
)


FLOOR_NOTE = (
    "`floor`: `benchmarks/floor_app.py`, a Streamlit page with two tiny plotly charts and no torch, started "
    "with `streamlit run` and timed the same way. Above the floor, with `python -m app.serve`: "
    "{cold:+.2f} s to the first chart of a fresh server, {warm:+.2f} s on a warm one."
)


def _above_floor(summary: dict) -> dict:
    serve, floor = summary["serve"], summary["floor"]
    return {"cold": serve["first_chart_after_healthy_s"] - floor["first_chart_after_healthy_s"],
            "warm": serve["warm_first_chart_s"] - floor["warm_first_chart_s"]}  # fmt: skip


def _cells(*values) -> str:
    return "| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in values) + " |"


def render(result: dict) -> str:
    s = result["summary"]
    loads = [v["load1"] for v in result["views"]]
    verdict = "met" if s["target"]["met"] else "not met"
    lines = [
        f"# Cold first view of the Compare page — {result['device']}",
        "",
        f"{result['date']}, torch {result['torch']}, {result['threads']} threads; median of "
        f"{result['repeats']} fresh servers per row; 1-min load average {min(loads):.1f}-{max(loads):.1f} "
        "(shared machine).",
        "",
        f"**Target: first chart <= {TARGET_S} s after `/_stcore/health`; with `python -m app.serve`: "
        f"{s['target']['measured_s']:.2f} s ({verdict}).**",
        "",
        "## In Chromium (seconds)",
        "",
        "| server | process start -> healthy | healthy -> first chart | healthy -> both charts "
        "| page JS loaded | browser drawing | warm server: first chart | warm: both |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [_cells(f"`{how}`", *(s[how][k] for k in VIEW_COLUMNS)) for how in SERVERS if how in s]
    lines += ["", VIEW_NOTE, ""]
    if "above_floor_s" in s:  # results from before the floor was measured have none
        lines += [FLOOR_NOTE.format(**s["above_floor_s"]), ""]
    lines += ["## Server side, step by step (fresh process, seconds, median)", ""]
    steps = s["server_steps_median_s"]
    lines += ["| step | s |", "|---|---|"] + [_cells(k, v) for k, v in steps.items()]
    lines += [_cells("**total**", sum(steps.values())), ""]
    lines += ["## Every run", "", "| server | load1 | healthy | first chart | both | tracebacks |"]
    lines += ["|---|---|---|---|---|---|"]
    for v in result["views"]:
        cold = v["cold"]
        lines.append(_cells(f"`{v['how']}`", v["load1"], v["health_s"], cold["first_chart_s"],
                            cold["all_charts_s"], v["tracebacks"]))  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(live.ROOT / "benchmarks" / "results" / "first_view-cpu.json"))
    args = parser.parse_args(argv)
    print(write_results(measure(args.repeats), args.out, render))


if __name__ == "__main__":
    main()
