"""lint_model: each finding on a hand-broken model, none on healthy ones."""

from __future__ import annotations

import torch

from attnres import Model, ModelConfig, load_model, save_model
from attnres.importers import ImportReport
from attnres.lint import Finding, lint_model


def model_of(residual: str = "full", block_size: int | None = None, trained: bool = True) -> Model:
    config = ModelConfig(
        vocab_size=40,
        block_size=32,
        n_layer=2,
        n_head=4,
        d_model=32,
        residual=residual,
        attnres_block_size=block_size,
    )
    torch.manual_seed(0)
    model = Model(config).eval()
    if trained:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith(".query"):
                    p.copy_(0.3 * torch.randn_like(p))
    return model


def codes(findings: list[Finding], severity: str | None = None) -> set[str]:
    return {f.code for f in findings if severity is None or f.severity == severity}


def test_healthy_models_have_no_errors():
    for model in (model_of("full"), model_of("block", 2), model_of("block", 3), model_of("prenorm")):
        assert codes(lint_model(model), "error") == set()
    assert lint_model(model_of("prenorm")) == []


def test_fresh_model_zero_queries_is_only_info():
    findings = lint_model(model_of("block", 2, trained=False))
    assert [(f.severity, f.code) for f in findings] == [("info", "zero-queries")]


def test_zero_queries_in_a_checkpoint_that_claims_training(tmp_path):
    save_model(model_of("full", trained=False), tmp_path, extra_config={"training": {"steps": 500}})
    findings = lint_model(load_model(tmp_path))
    assert ("error", "zero-queries") in {(f.severity, f.code) for f in findings}
    assert "500 training steps" in next(f.message for f in findings if f.code == "zero-queries")


def test_zero_queries_with_trained_norm_gains():
    model = model_of("full", trained=False)
    with torch.no_grad():
        model.final_norm.weight.mul_(1.5)
    assert "zero-queries" in codes(lint_model(model), "error")


def test_missing_readout():
    model = model_of("full")
    with torch.no_grad():
        model.out_res.query.zero_()
    assert "missing-readout" in codes(lint_model(model), "error")


def test_block_size_unit_not_stated_by_a_foreign_source():
    model = model_of("block", 2)
    model.import_report = ImportReport(format="some-peer", source="x.pt", architecture="", n_params=1)
    assert "block-size-unit" in codes(lint_model(model), "warning")
    model.import_report = ImportReport(
        format="some-peer",
        source="x.pt",
        architecture="",
        n_params=1,
        conventions=(("block-size unit", "sublayers"),),
    )
    assert "block-size-unit" not in codes(lint_model(model))


def test_nonfinite_weights_skip_the_probe():
    model = model_of("full")
    with torch.no_grad():
        model.blocks[1].mlp.c_fc.weight[0, 0] = float("nan")
    findings = lint_model(model)
    assert codes(findings) == {"nonfinite"}
    assert "blocks.1.mlp.c_fc.weight" in findings[0].message


def test_value_spike_in_a_concentrated_site():
    model = model_of("full")
    direction = torch.nn.functional.normalize(torch.randn(32), dim=0)
    with torch.no_grad():  # v_1 = 100 * direction at every token; the readout query points at it
        model.blocks[0].attn.c_proj.weight.zero_()
        model.blocks[0].attn.c_proj.bias = torch.nn.Parameter(100 * direction)
        model.out_res.query.copy_(10 * direction)
    findings = [f for f in lint_model(model) if f.code == "value-spike"]
    assert any(f.message.startswith("site 5: at 16 token(s)") for f in findings)  # the readout, every token


def test_alpha_rows_that_do_not_sum_to_one():
    model = model_of("full")
    site = model.site(3)
    original = site.weights
    site.weights = lambda sources: 2 * original(sources)
    findings = lint_model(model)
    assert any(f.code == "alpha-sum" and f.message.startswith("site 3:") for f in findings)


def test_embedding_counted_twice():
    model = model_of("full")
    model.blocks[0].attention = lambda h: h  # v_1 = h_1 = v_0: a cumulative state that repeats the embedding
    assert "embedding-twice" in codes(lint_model(model), "error")


def test_errors_come_first_and_prompt_ids_are_used():
    model = model_of("full", trained=False)
    with torch.no_grad():
        model.final_norm.weight.mul_(1.5)
    findings = lint_model(model, prompt_ids=[1, 2, 3])
    assert findings[0].severity == "error"
