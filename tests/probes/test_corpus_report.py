"""`python -m probes.report --corpus PATH --max-seqs N`: the corpus section and numbers."""

import json

from attnres import save_model
from probes.report import main
from tests.toys import tiny_model

TEXT = "To be, or not to be, that is the question. "
CONTEXT = 16  # tokens per corpus sequence: the tiny model's context


def test_report_with_a_corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNRES_LENS_CACHE", str(tmp_path / "cache"))
    vocab = "".join(sorted(set(TEXT)))
    model = tiny_model("block", 2, vocab=vocab, n_layer=2, d_model=16, block_size=CONTEXT, seed=1)
    path = save_model(model, tmp_path / "tiny-block")
    (tmp_path / "c.txt").write_text(TEXT * 30)
    args = [
        str(path),
        "--prompt",
        "To be",
        "--out",
        str(tmp_path / "r"),
        "--attribution-steps",
        "4",
        "--quiet",
    ]
    assert main([*args, "--corpus", str(tmp_path / "c.txt"), "--max-seqs", "3"]) == 0
    stats = json.loads((tmp_path / "r" / "json" / "tiny-block" / "corpus.json").read_text())
    assert stats["n_sequences"] == 3 and stats["n_tokens"] == 3 * CONTEXT
    page = (tmp_path / "r" / "report.html").read_text()
    assert "Over the corpus" in page and f"3 sequences · {3 * CONTEXT} tokens" in page
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1
    assert main([*args, "--corpus", str(tmp_path / "missing.txt")]) == 2
