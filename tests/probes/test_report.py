"""The CLI report on the three shipped models: files, numbers, and an HTML page that works offline."""

import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from figures.export import offline_problems
from probes.sweep import SWEEP, full_sweep
from report.cli import main, model_names

ROOT = Path(__file__).resolve().parents[2]
MODELS = [ROOT / "sample_models" / f"shakespeare-{rule}" for rule in ("prenorm", "full", "block")]
PROMPT = "To be, or <b>not</b>"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    start = time.perf_counter()
    assert (
        main(
            [*map(str, MODELS), "--prompt", PROMPT, "--out", str(out), "--attribution-steps", "8", "--quiet"]
        )
        == 0
    )
    return out, time.perf_counter() - start


def test_report_is_fast_and_writes_every_number(report):
    out, seconds = report
    assert seconds < 60
    names = model_names(MODELS)
    assert names == ["shakespeare-prenorm", "shakespeare-full", "shakespeare-block"]
    for name in names:
        files = {p.stem for p in (out / "json" / name).glob("*.json")}
        assert files == {*SWEEP, "depth_sinks", "prompt"}
    depth = json.loads((out / "json" / "shakespeare-block" / "depth_weights.json").read_text())
    assert depth["residual"] == "block" and len(depth["mean"]) == 17
    models = json.loads((out / "models.json").read_text())
    assert len(models["shakespeare-full"]["fingerprint"]) == 12
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert len(rows) == 3 * 17 and rows[0]["model"] == "shakespeare-prenorm"
    assert float(rows[16]["lens_kl"]) == pytest.approx(0.0, abs=1e-5)  # the readout is the model itself
    blocks = list(csv.DictReader((out / "blocks.csv").open()))
    assert len(blocks) == 3 * 8
    norms = json.loads((out / "json" / "shakespeare-block" / "stream_norms.json").read_text())
    np.testing.assert_allclose(
        [float(b["output_rms"]) for b in blocks[16:]], norms["block_output_rms"], rtol=1e-6
    )


def test_report_html_is_offline_and_complete(report):
    out, _ = report
    html = (out / "report.html").read_text(encoding="utf-8")
    assert offline_problems(html, bundles=1) == []
    for heading in (
        "Models",
        "Depth-attention weights (Fig. 8)",
        "Fig. 5b",
        "Fig. 5c",
        "Who reads whom",
        "Logit lens",
        "Attribution and ablation for the last token",
    ):
        assert heading in html
    assert html.count("Plotly.newPlot") >= 20
    assert "<b>not</b>" not in html and "&lt;b&gt;not&lt;/b&gt;" in html
    for name in ("shakespeare-prenorm", "shakespeare-full", "shakespeare-block"):
        assert json.loads((out / "models.json").read_text())[name]["fingerprint"] in html


def test_sweep_api_and_bad_inputs(tmp_path):
    from attnres import load_model

    model = load_model(MODELS[2])
    sweep = full_sweep([model], "To be", probes=("depth_weights", "ablate"))
    assert (
        set(sweep.results["model0"]) == {"depth_weights", "depth_sinks", "ablate"}
        and len(sweep.results["model0"]["ablate"]) == 4
    )
    assert sweep.total_seconds("model0") > 0
    with pytest.raises(ValueError, match="unknown probes"):
        full_sweep([model], "To be", probes=("nope",))
    assert (
        main([str(tmp_path / "missing"), "--prompt", "To be", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    )
    with pytest.raises(SystemExit):  # argparse: --prompt and --out are required
        main([str(MODELS[0])])


@pytest.mark.parametrize("module", ["report", "probes.report"])  # the package, and its old name
def test_module_entry_point_prints_help(module):
    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "--prompt" in done.stdout


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Chromium")
def test_report_renders_in_a_browser_without_network(report):
    out, _ = report
    command = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--proxy-server=127.0.0.1:9",
               "--virtual-time-budget=10000", "--dump-dom", (out / "report.html").as_uri()]  # fmt: skip
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    assert dom.count('class="main-svg"') >= 20  # plotly drew the figures with the inlined bundle


def test_probes_share_one_trace_and_refuse_another_models():
    from attnres import load_model
    from probes import depth_retrieval, depth_weights, logit_lens, stream_norms, trace

    block, full = load_model(MODELS[2]), load_model(MODELS[1])
    shared = trace(block, "To be, or not")
    for probe in (depth_weights, stream_norms, depth_retrieval, logit_lens):
        a, b = probe(block, shared).to_dict(), probe(block, "To be, or not").to_dict()
        assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    with pytest.raises(ValueError, match="another model"):
        depth_weights(full, shared)
