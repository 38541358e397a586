"""The probes on CUDA give the CPU's numbers (fp32). Skipped where there is no CUDA device."""

from pathlib import Path

import numpy as np
import pytest
import torch

import probes
from attnres import load_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer"
FIELDS = {
    probes.depth_weights: ("mean", "std", "entropy"),
    probes.stream_norms: ("input_rms_mean", "update_ratio_mean", "block_output_rms"),
    probes.depth_retrieval: ("weight_mean", "share_mean", "mixing"),
    probes.logit_lens: ("entropy_mean", "kl_mean", "target_logprob_mean"),
    probes.gradient_norms: ("block_param_grad_norm", "stream_grad_norm_mean"),
}


@pytest.mark.parametrize("rule", ["prenorm", "full", "block"])
@pytest.mark.parametrize("probe", list(FIELDS), ids=lambda p: p.__name__)
def test_probe_on_cuda_matches_cpu(rule, probe):
    path = ROOT / "sample_models" / f"shakespeare-{rule}"
    on_cpu = probe(load_model(path, device="cpu"), PROMPT)
    on_gpu = probe(load_model(path, device="cuda"), PROMPT)
    for field in FIELDS[probe]:
        a, b = np.asarray(getattr(on_cpu, field)), np.asarray(getattr(on_gpu, field))
        np.testing.assert_allclose(b, a, rtol=2e-3, atol=2e-4, equal_nan=True, err_msg=field)


@pytest.mark.parametrize("rule", ["full", "block"])
def test_ablation_on_cuda_matches_cpu(rule):
    path = ROOT / "sample_models" / f"shakespeare-{rule}"
    results = [
        probes.ablate(load_model(path, device=d), PROMPT, site=9, mode="uniform") for d in ("cpu", "cuda")
    ]
    assert results[1].delta_loss == pytest.approx(results[0].delta_loss, abs=1e-4)
    assert results[1].top_tokens_after == results[0].top_tokens_after


@pytest.mark.parametrize("rule", ["prenorm", "full", "block"])
def test_gate_attribution_on_cuda_matches_cpu(rule):
    path = ROOT / "sample_models" / f"shakespeare-{rule}"
    a, b = (probes.gate_attribution(load_model(path, device=d), PROMPT, n_steps=16) for d in ("cpu", "cuda"))
    np.testing.assert_allclose(b.attribution, a.attribution, rtol=2e-3, atol=2e-3, equal_nan=True)
    np.testing.assert_allclose(b.logprob_baseline, a.logprob_baseline, atol=1e-4)
    assert b.targets.tolist() == a.targets.tolist()
