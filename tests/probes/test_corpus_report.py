"""`python -m probes.report --corpus PATH --max-seqs N`: the corpus section and numbers."""

import json
from pathlib import Path

from probes.report import main

ROOT = Path(__file__).resolve().parents[2]
MODEL = str(ROOT / "sample_models" / "shakespeare-block")


def test_report_with_a_corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNRES_LENS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "c.txt").write_text("To be, or not to be, that is the question. " * 30)
    args = [MODEL, "--prompt", "To be", "--out", str(tmp_path / "r"), "--attribution-steps", "4", "--quiet"]
    assert main([*args, "--corpus", str(tmp_path / "c.txt"), "--max-seqs", "3"]) == 0
    stats = json.loads((tmp_path / "r" / "json" / "shakespeare-block" / "corpus.json").read_text())
    assert stats["n_sequences"] == 3 and stats["n_tokens"] == 3 * 256
    page = (tmp_path / "r" / "report.html").read_text()
    assert "Over the corpus" in page and "3 sequences · 768 tokens" in page
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1
    assert main([*args, "--corpus", str(tmp_path / "missing.txt")]) == 2
