"""The corpus sweep under torchrun: 2 CPU ranks (gloo), each one shard, equal the 1-process sweep."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from attnres import load_model, save_model
from probes.corpus import SweepSettings, corpus_sweep
from tests.toys import tiny_model

ROOT = Path(__file__).resolve().parents[2]


def _close(a, b, path=""):
    """Equal structure and strings; numbers equal to 1e-6 (merge order changes only the rounding)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _close(a[key], b[key], f"{path}.{key}")
        return
    try:
        x, y = np.array(a, dtype=float), np.array(b, dtype=float)
    except (TypeError, ValueError):
        assert a == b, path
        return
    np.testing.assert_allclose(x, y, atol=1e-6, rtol=1e-6, err_msg=path)


@pytest.mark.slow
def test_two_cpu_ranks_equal_one_process(tmp_path):
    model = tiny_model("block", 2, vocab="abcdefgh ?", n_layer=2, d_model=16, block_size=16, query_std=1.0)
    save_model(model, tmp_path / "m")
    text = "".join("abcdefgh "[(i * 7 + i // 5) % 9] for i in range(16 * 23 + 5))
    (tmp_path / "c.txt").write_text(text)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "probes.corpus", str(tmp_path / "m"), "--corpus", str(tmp_path / "c.txt"), "--seq-len", "16",
           "--max-seqs", "100", "--batch-size", "3", "--no-cache", "--quiet",
           "--out", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"model"')]
    assert len(lines) == 1 and lines[0]["sequences"] == 23  # rank 0 prints the merged result only
    ranks = json.loads((tmp_path / "out" / "m.json").read_text())
    one = corpus_sweep(
        load_model(tmp_path / "m"), tmp_path / "c.txt", SweepSettings(seq_len=16, batch_size=3)
    )
    assert ranks["n_tokens"] == one.n_tokens == 23 * 16
    _close(ranks, json.loads(json.dumps(one.to_dict())))
