"""app.warm: after it, no page imports a library of its own (so no session can see one half-built),
and its default view is what the home page reads from the caches."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

from streamlit.testing.v1 import AppTest

from app import common, warm
from figures import depth as figures_depth
from figures import norms as figures_norms
from figures import retrieval as figures_retrieval
from probes import registry

PAGES_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from streamlit.testing.v1 import AppTest
    import app.warm  # noqa: F401

    def packages():
        return {name.split(".")[0] for name in sys.modules} - set(sys.stdlib_module_names)

    at = AppTest.from_file(sys.argv[1], default_timeout=300)
    at.query_params["prompt"] = "To be, or not"
    at.run()
    before = packages()
    for path in sorted(Path("app/views").glob("*.py")):
        at.switch_page(f"views/{path.name}").run()
        assert not at.exception, (path, [e.message for e in at.exception])
    print(sorted(packages() - before))
    """
)


def _last_line(ui, script: str) -> str:
    """The last line ``script`` prints, run in a fresh interpreter with the app's entry as argv[1]."""
    entry = str(ui.REPO_ROOT / "app" / "streamlit_app.py")
    run = subprocess.run(
        [sys.executable, "-c", script, entry], cwd=ui.REPO_ROOT, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout.strip().splitlines()[-1]


def test_no_page_imports_a_library_after_warm(ui):
    """Every page, run once after ``import app.warm``, imports no third-party package: whatever
    a page needs lazily is then already complete when the first session runs."""
    new = _last_line(ui, PAGES_SCRIPT)
    assert new == "[]", f"pages imported {new} lazily: import them in app/warm.py"


HOME_SCRIPT = textwrap.dedent(
    """
    import sys
    from streamlit.testing.v1 import AppTest
    import app.warm

    def packages():
        return {name.split(".")[0] for name in sys.modules} - set(sys.stdlib_module_names)

    app.warm.import_the_rest = lambda: None  # the first step alone
    before = packages()
    at = AppTest.from_file(sys.argv[1], default_timeout=300)
    at.query_params["prompt"] = "To be, or not"
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    print(sorted(before & {"captum", "kaleido", "scipy"}), sorted(packages() - before))
    """
)


def test_the_home_page_needs_only_the_first_step(ui):
    """The Compare page imports no package beyond the first step of the warm-up, which leaves the
    libraries only other pages need (Captum, kaleido, scipy) for later: the home page is drawn
    without waiting for them and never runs while one of its own libraries is half-imported."""
    assert _last_line(ui, HOME_SCRIPT) == "[] []"


def _counting(calls: list, name: str, fn):
    def counted(*args, **kwargs):
        calls.append(name)
        return fn(*args, **kwargs)

    return counted


def test_warm_default_view_is_what_the_home_page_reads(ui, monkeypatch):
    """After ``warm_default_view`` the home page on the default prompt computes nothing itself: no
    probe, no figure, no table."""
    warm.warm_default_view()
    calls = []
    for name, fn in list(registry.PROBES.items()):
        monkeypatch.setitem(registry.PROBES, name, _counting(calls, name, fn))
    for module, name in ((figures_depth, "depth_heatmaps"), (figures_norms, "norm_growth_chart"),
                         (figures_retrieval, "retrieval_summary")):  # fmt: skip
        monkeypatch.setattr(module, name, _counting(calls, name, getattr(module, name)))
    ui.open_app(prompt=f"a prompt no earlier test cached {time.time_ns()}")  # computed, through the patches
    assert {"depth_weights", "prompt_loss", "depth_heatmaps", "retrieval_summary"} <= set(calls), calls
    calls.clear()
    at = AppTest.from_file(str(ui.REPO_ROOT / "app" / "streamlit_app.py"), default_timeout=120).run()
    ui.no_failures(at)
    assert f"Prompt: {len(common.DEFAULT_PROMPT)} tokens." in [c.value for c in at.caption]
    assert calls == [], f"the home page computed {calls} although warm_default_view had run"


def test_concurrent_identical_misses_are_computed_once(monkeypatch):
    """Sessions asking for the same uncached probe at the same moment share one computation
    (Streamlit holds a lock per cache key while the first of them computes)."""
    calls = []

    def slow(model, text, **params):
        calls.append(text)
        time.sleep(0.3)
        return len(text)

    monkeypatch.setitem(registry.PROBES, "slow_probe_for_this_test", slow)
    text = f"the same prompt {time.time_ns()}"  # a key no earlier run has cached
    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(
                lambda _: common._cached_probe(
                    None, "key", "cpu", "fp32", "slow_probe_for_this_test", text, ()
                ),
                range(8),
            )
        )
    assert results == [len(text)] * 8
    assert calls == [text], f"computed {len(calls)} times"
