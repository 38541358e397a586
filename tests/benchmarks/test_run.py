"""The benchmark runner end to end on a tiny CPU shape, its targets, and what it may import."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks import render, run
from benchmarks.targets import evaluate_targets

ROOT = Path(__file__).resolve().parents[2]
ROW_KEYS = {"shape", "phase", "residual", "attnres_block_size", "depth_impl", "dtype", "batch", "seq",
            "median_ms", "tokens_per_s", "peak_mem_mb", "ratio_vs_prenorm"}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "tiny.json"
    run.main(["--device", "cpu", "--quick", "--shapes", "tiny", "--repeats", "2", "--out", str(out)])
    return out, json.loads(out.read_text())


def test_json_follows_the_design_schema(tiny_run):
    _, result = tiny_run
    assert {"device", "torch", "date", "dtype", "results"} <= result.keys()
    assert result["dtype"] == "fp32" and result["quick"] is True
    rows = result["results"]
    assert all(set(r) == ROW_KEYS for r in rows)
    got = {(r["phase"], r["residual"], r["depth_impl"]) for r in rows}
    expected_inference = {("inference", "prenorm", "sequential")} | {
        ("inference", r, i) for r in ("full", "block") for i in ("sequential", "two_phase")
    }
    expected_train = {("train", "prenorm", "sequential")} | {
        ("train", r, i) for r in ("full", "block") for i in ("sequential", "two_phase")
    }
    assert expected_inference | expected_train == got
    for r in rows:
        assert (r["batch"], r["seq"], r["shape"]) == (2, 16, "tiny")
        assert r["median_ms"] > 0 and r["peak_mem_mb"] is None  # no allocator statistics on CPU
        tokens_per_s = 2 * 16 / (r["median_ms"] / 1000)
        assert r["tokens_per_s"] == pytest.approx(tokens_per_s, rel=1e-3, abs=0.051)  # rounded to 0.1
        assert r["attnres_block_size"] == (4 if r["residual"] == "block" else None)
        assert r["ratio_vs_prenorm"] > 0


def test_prenorm_rows_are_the_unit(tiny_run):
    _, result = tiny_run
    prenorm = [r for r in result["results"] if r["residual"] == "prenorm"]
    assert len(prenorm) == 2 and all(r["ratio_vs_prenorm"] == 1.0 for r in prenorm)


def test_paths_agree_and_targets_are_reported(tiny_run):
    _, result = tiny_run
    # full and block: two_phase and the default path; "fused" rows only where it runs
    assert [(c["residual"], c["depth_impl"]) for c in result["checks"]] == [
        ("full", "two_phase"), ("full", "default"), ("block", "two_phase"), ("block", "default")
    ]  # fmt: skip
    assert all(c["max_abs_diff_vs_sequential"] < 1e-5 for c in result["checks"])
    assert [t["name"] for t in result["targets"]] == [
        "block_inference_overhead", "full_inference_overhead", "two_phase_speedup", "block_train_overhead"
    ]  # fmt: skip
    assert all(t["met"] is None for t in result["targets"])  # the tiny shape is none of the targets'
    assert result["probe_sweep"]["status"] in ("ok", "skipped", "failed")


def test_markdown_is_rendered_from_the_json(tiny_run):
    path, result = tiny_run
    md = path.with_suffix(".md").read_text()
    assert md == render.render(result)
    assert "| tiny | block | 4 | two_phase | fp32 | 2 x 16 |" in md
    path.with_suffix(".md").unlink()
    render.main([str(path)])
    assert path.with_suffix(".md").read_text() == md


def _row(shape, phase, residual, impl, ms, ratio):
    return {"shape": shape, "phase": phase, "residual": residual, "depth_impl": impl, "median_ms": ms,
            "ratio_vs_prenorm": ratio}  # fmt: skip


def test_targets_say_whether_met_and_by_how_much():
    rows = [
        _row("gpt2-small", "inference", "block", "two_phase", 10.5, 1.05),
        _row("gpt2-small", "inference", "block", "fused", 10.2, 1.02),
        _row("gpt2-small", "inference", "full", "two_phase", 11.5, 1.15),
        _row("deep", "inference", "full", "sequential", 30.0, 3.0),
        _row("deep", "inference", "full", "two_phase", 15.0, 1.5),
        _row("deep", "inference", "full", "fused", 12.0, 1.2),
    ]
    by_name = {t["name"]: t for t in evaluate_targets(rows, quick=False)}
    block = by_name["block_inference_overhead"]
    assert (block["met"], block["impl"], block["measured"], block["margin"]) == (
        True,
        "fused",
        1.02,
        "+1.0 pp of PreNorm time",
    )
    full = by_name["full_inference_overhead"]
    assert (full["met"], full["margin"]) == (False, "-5.0 pp of PreNorm time")
    speed = by_name["two_phase_speedup"]
    assert (speed["met"], speed["impl"], speed["measured"]) == (True, "fused", 2.5)
    assert "two_phase 2.00x" in speed["detail"]
    assert by_name["block_train_overhead"]["met"] is None


def test_benchmark_path_needs_only_torch():
    """The GPU machine has torch, numpy, safetensors, tqdm and triton only: no app dependencies."""
    script = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"streamlit", "plotly", "tokenizers", "transformers", "captum",
                                          "kaleido", "pandas", "scipy", "hypothesis"}:
                    raise ImportError(f"{name} is not on the GPU machine")
        sys.meta_path.insert(0, Block())
        import benchmarks.run, benchmarks.render, attnres.kernels
        print("ok")
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]


def test_every_committed_results_file_re_renders_to_its_markdown():
    """`python -m benchmarks.render` (README) rebuilds each results/*.md from its JSON, unchanged."""
    import json

    from benchmarks.render import RESULTS, renderer_for

    paths = sorted(RESULTS.glob("*.json"))
    assert len(paths) >= 5
    for path in paths:
        text = renderer_for(path)(json.loads(path.read_text()))
        assert text.rstrip("\n") == path.with_suffix(".md").read_text().rstrip("\n"), path.name
