"""Public AttnRes checkpoints import exactly, or are refused with one sentence naming the setting.

Each test writes a tiny random checkpoint the way that project saves it (its parameter names, dict
keys, file names and config files; facts in docs/formats.md), loads it with ``load_model``, and
compares the logits with an independent forward written here in plain torch from the project's
conventions, not with our Model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from attnres import CheckpointError, Model, ModelConfig, load_model, save_model
from attnres.lint import lint_model
from attnres.sources import SourceRule, source_tensors

V, T, D, H = 48, 16, 32, 4  # vocabulary, context, width, heads
TOL = 1e-4
SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"


@pytest.fixture
def ids() -> torch.Tensor:
    return torch.randint(0, V, (2, 12), generator=torch.Generator().manual_seed(3))


def random_tensors(shapes: dict[str, tuple], seed: int) -> dict[str, torch.Tensor]:
    """Random weights; norm gains near 1, so a gain that is ignored or misplaced shows."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in shapes.items():
        gain = name.endswith("norm.weight") or ".ln_" in name or name.endswith(("ln_1.weight", "ln_2.weight"))
        noise = torch.randn(*shape, generator=g)
        out[name] = 1 + 0.2 * noise if gain else 0.3 * noise
    return out


def measured(fmt: str, ours: torch.Tensor, reference: torch.Tensor) -> float:
    """max |delta logit|, printed (``pytest -s``) for the parity table of docs/formats.md."""
    diff = (ours - reference).abs().max().item()
    print(f"parity {fmt}: max |delta logit| = {diff:.1e}")
    return diff


# ---- plain-torch building blocks of the reference forwards ------------------------------------
def rms(x: torch.Tensor, gain: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * gain


def causal_attention(x, w_qkv, b_qkv, w_out, b_out):
    """Multi-head causal self-attention written out: softmax(q k^T / sqrt(hd)) v."""
    B, n, _ = x.shape
    q, k, v = (t.view(B, n, H, D // H).transpose(1, 2) for t in F.linear(x, w_qkv, b_qkv).split(D, -1))
    scores = q @ k.transpose(-1, -2) / math.sqrt(D // H)
    scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, n, D)
    return F.linear(y, w_out, b_out)


def depth_mix(sources, query, gain, eps, key_norm=rms):
    """alpha_i = softmax_i(w . RMSNorm(v_i)); h = sum_i alpha_i v_i."""
    values = torch.stack(sources)
    alpha = torch.einsum("d,sbtd->sbt", query, key_norm(values, gain, eps)).softmax(0)
    return torch.einsum("sbt,sbtd->btd", alpha, values)


# ---- nanoGPT (GPT-2) bodies: the nanoGPT AttnRes PR, nanoAttnRes, the repro's PreNorm twin -----
def nanogpt_shapes(n_layer: int) -> dict[str, tuple]:
    shapes = {"transformer.wte.weight": (V, D), "transformer.wpe.weight": (T, D)}
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        shapes |= {
            p + "ln_1.weight": (D,),
            p + "ln_1.bias": (D,),
            p + "ln_2.weight": (D,),
            p + "ln_2.bias": (D,),
        }
        shapes |= {p + "attn.c_attn.weight": (3 * D, D), p + "attn.c_attn.bias": (3 * D,)}
        shapes |= {p + "attn.c_proj.weight": (D, D), p + "attn.c_proj.bias": (D,)}
        shapes |= {p + "mlp.c_fc.weight": (4 * D, D), p + "mlp.c_fc.bias": (4 * D,)}
        shapes |= {p + "mlp.c_proj.weight": (D, 4 * D), p + "mlp.c_proj.bias": (D,)}
    return shapes | {"transformer.ln_f.weight": (D,), "transformer.ln_f.bias": (D,)}


def with_tied_head(sd: dict) -> dict:
    return sd | {"lm_head.weight": sd["transformer.wte.weight"]}  # nanoGPT saves both names


def nanogpt_sublayer(sd: dict, j: int, x: torch.Tensor) -> torch.Tensor:
    """Sublayer j (0-based; even = attention, odd = MLP) of nanoGPT's block j // 2, its LayerNorm first."""
    p = f"transformer.h.{j // 2}."
    ln = "ln_1" if j % 2 == 0 else "ln_2"
    x = F.layer_norm(x, (D,), sd[p + ln + ".weight"], sd[p + ln + ".bias"], 1e-5)
    if j % 2 == 0:
        w = [sd[p + "attn." + n] for n in ("c_attn.weight", "c_attn.bias", "c_proj.weight", "c_proj.bias")]
        return causal_attention(x, *w)
    hidden = F.gelu(F.linear(x, sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"]))
    return F.linear(hidden, sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"])


def nanogpt_embed(sd: dict, ids: torch.Tensor) -> torch.Tensor:
    return sd["transformer.wte.weight"][ids] + sd["transformer.wpe.weight"][: ids.shape[1]]


def nanogpt_head(sd: dict, x: torch.Tensor) -> torch.Tensor:
    x = F.layer_norm(x, (D,), sd["transformer.ln_f.weight"], sd["transformer.ln_f.bias"], 1e-5)
    return x @ sd["lm_head.weight"].T


def nanogpt_res(sd: dict, n_layer: int, seed: int) -> dict:
    """The PR's per-sublayer depth parameters: nn.Linear(d, 1) queries [1, d] and RMSNorm gains."""
    names = [f"transformer.h.{i}.{k}_res_" for i in range(n_layer) for k in ("attn", "mlp")]
    shapes = {n + "proj.weight": (1, D) for n in names} | {n + "norm.weight": (D,) for n in names}
    return sd | random_tensors(shapes, seed)


def nanogpt_ckpt(sd: dict, model_args: dict, iter_num: int = 250) -> dict:
    """nanoGPT train.py's ckpt.pt: model, optimizer, model_args, iter_num, best_val_loss, config."""
    optimizer = {"state": {}, "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.99), "params": [0, 1]}]}
    config = {"dataset": "shakespeare_char", "batch_size": 64, "learning_rate": 1e-3, "compile": False}
    return dict(
        model=sd,
        optimizer=optimizer,
        model_args=model_args,
        iter_num=iter_num,
        best_val_loss=torch.tensor(1.5),
        config=config,
    )


def gpt_args(n_layer: int, **extra) -> dict:
    args = dict(n_layer=n_layer, n_head=H, n_embd=D, block_size=T, bias=True, vocab_size=V, dropout=0.0)
    return args | extra


# -- karpathy/nanoGPT#696/#697 --------------------------------------------------------------------
def pr_key_norm(x, gain, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * gain  # its RMSNorm, eps 1e-6


def pr_reference(ckpt: dict, ids: torch.Tensor) -> torch.Tensor:
    """The PR's forward: blocks = [x], partial = x; a boundary before layer i when i % (S // 2) == 0,
    i > 0; attention over blocks + [partial] before each sublayer; output ln_f(partial)."""
    sd, args = ckpt["model"], ckpt["model_args"]
    layers_per_block = args["attn_res_block_size"] // 2
    x = nanogpt_embed(sd, ids)
    blocks, partial = [x], x

    def mix(name, sources):
        w = sd[name + "_proj.weight"][0]
        return depth_mix(sources, w, sd[name + "_norm.weight"], 1e-6, pr_key_norm)

    for i in range(args["n_layer"]):
        p = f"transformer.h.{i}."
        h = mix(p + "attn_res", blocks + [partial])
        if i % layers_per_block == 0 and i > 0:
            blocks, partial = blocks + [partial], None
        attn_out = nanogpt_sublayer(sd, 2 * i, h)
        partial = attn_out if partial is None else partial + attn_out
        h = mix(p + "mlp_res", blocks + [partial])
        partial = partial + nanogpt_sublayer(sd, 2 * i + 1, h)
    return nanogpt_head(sd, partial)


@pytest.mark.parametrize(("n_layer", "S"), [(3, 2), (4, 4), (3, 8), (4, 3)])
def test_nanogpt_attnres_pr_imports_exactly(tmp_path, ids, n_layer, S):
    sd = with_tied_head(nanogpt_res(random_tensors(nanogpt_shapes(n_layer), S), n_layer, 10 + S))
    ckpt = nanogpt_ckpt(sd, gpt_args(n_layer, attn_res=True, attn_res_block_size=S))
    (tmp_path / "out-shakespeare-char-attnres").mkdir()
    path = tmp_path / "out-shakespeare-char-attnres" / "ckpt.pt"
    torch.save(ckpt, path)
    model = load_model(path.parent)
    with torch.no_grad():
        assert measured("nanogpt-attnres-pr", model(ids).logits, pr_reference(ckpt, ids)) <= TOL
    report = model.import_report
    assert report.format == "nanogpt-attnres-pr" and report.trained_steps == 250
    assert model.config.attnres_block_size == 2 * (S // 2) and model.config.readout == "none"
    assert model.config.first_block_has_embedding and model.config.key_norm_eps == 1e-6
    assert ("transformer.h.0.attn_res_proj.weight[0]", "blocks.0.attn_res.query") in report.mapped


def test_nanogpt_attnres_pr_block_size_one_is_refused(tmp_path):
    sd = with_tied_head(nanogpt_res(random_tensors(nanogpt_shapes(2), 0), 2, 1))
    torch.save(nanogpt_ckpt(sd, gpt_args(2, attn_res=True, attn_res_block_size=1)), tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match=r"attn_res_block_size=1 gives no whole Transformer layer"):
        load_model(tmp_path / "ckpt.pt")


# -- limei1221/nanoAttnRes --------------------------------------------------------------------
def nanoattnres_key_norm(x, gain, eps):
    return gain * x / x.pow(2).mean(-1, keepdim=True).add(eps).sqrt()  # its RMSNorm, eps 1e-5


def nanoattnres_reference(ckpt: dict, ids: torch.Tensor) -> torch.Tensor:
    """nanoAttnRes: partial = x, blocks = []; before sublayer s, h = attention over blocks + [partial],
    then at s % (2L / N) == 0 the partial is pushed and restarts at zero; output ln_f(partial)."""
    sd, args = ckpt["model"], ckpt["model_args"]
    per_block = 2 * args["n_layer"] // args["n_attn_res_blocks"]
    blocks, partial = [], nanogpt_embed(sd, ids)
    for s in range(2 * args["n_layer"]):
        name = f"transformer.h.{s // 2}." + ("attn_res" if s % 2 == 0 else "mlp_res")
        w = sd[name + "_proj.weight"][0]
        h = depth_mix(blocks + [partial], w, sd[name + "_norm.weight"], 1e-5, nanoattnres_key_norm)
        if s % per_block == 0:
            blocks, partial = blocks + [partial], torch.zeros_like(partial)
        partial = partial + nanogpt_sublayer(sd, s, h)
    return nanogpt_head(sd, partial)


@pytest.mark.parametrize(("n_layer", "n_blocks"), [(3, 2), (4, 4), (3, 6), (2, 1)])
def test_nanoattnres_imports_exactly(tmp_path, ids, n_layer, n_blocks):
    sd = with_tied_head(nanogpt_res(random_tensors(nanogpt_shapes(n_layer), n_blocks), n_layer, 20))
    ckpt = nanogpt_ckpt(sd, gpt_args(n_layer, n_attn_res_blocks=n_blocks), iter_num=500)
    torch.save(ckpt, tmp_path / "ckpt.pt")
    model = load_model(tmp_path / "ckpt.pt")
    with torch.no_grad():
        assert measured("nanoattnres", model(ids).logits, nanoattnres_reference(ckpt, ids)) <= TOL
    S = 2 * n_layer // n_blocks
    assert model.config.residual == ("full" if S == 1 else "block") and model.config.readout == "none"
    assert model.config.attnres_block_size == (S if S > 1 else None)
    assert not model.config.first_block_has_embedding and model.config.key_norm_eps == 1e-5
    assert model.import_report.format == "nanoattnres" and model.import_report.trained_steps == 500


def test_nanoattnres_blocks_that_do_not_divide_are_refused(tmp_path):
    sd = with_tied_head(nanogpt_res(random_tensors(nanogpt_shapes(3), 0), 3, 1))
    torch.save(nanogpt_ckpt(sd, gpt_args(3, n_attn_res_blocks=4)), tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match=r"n_attn_res_blocks=4 .* must divide 2 \* n_layer = 6"):
        load_model(tmp_path / "ckpt.pt")


# -- tokenbender/nanogpt-attnres-repro's PreNorm twin --------------------------------------------
def repro_twin_state(n_layer: int, seed: int) -> dict:
    """GPT with hc_disable=True: each branch in a plain Residual, registered under three names."""
    sd = with_tied_head(random_tensors(nanogpt_shapes(n_layer), seed))
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        for name in [k for k in sd if k.startswith(p)]:
            rest = name[len(p) :]
            if rest.startswith(("ln_1.", "attn.")):
                branch = rest.replace("ln_1.", "norm.")
                sd[p + "attn_branch." + branch] = sd[name]
                sd[p + "hc_attn.branch." + branch] = sd[name]
            else:
                sd[p + "hc_mlp.branch." + rest.replace("ln_2.", "0.").replace("mlp.", "1.")] = sd[name]
    return sd


def repro_config(n_layer: int, **extra) -> dict:
    """GPTConfig.__dict__ as the repro's train.py saves it under 'config'."""
    config = dict(block_size=T, vocab_size=V, n_layer=n_layer, n_head=H, n_embd=D, dropout=0.0, bias=True)
    config |= dict(hc_num_streams=1, hc_num_fracs=1, hc_disable=True, mhc=False, v_residual=False)
    return config | dict(attnres_variant="none", attnres_block_size=1, attnres_eps=1e-8) | extra


def test_repro_prenorm_twin_imports_exactly(tmp_path, ids):
    sd = repro_twin_state(3, 7)
    ckpt = {"model": sd, "config": repro_config(3), "iter_num": 900, "best_val_loss": torch.tensor(1.2)}
    torch.save(ckpt, tmp_path / "ckpt.pt")
    model = load_model(tmp_path)
    x = nanogpt_embed(sd, ids)
    for j in range(6):
        x = x + nanogpt_sublayer(sd, j, x)  # PreNorm: h_{l+1} = h_l + f_l(LN(h_l))
    with torch.no_grad():
        assert measured("nanogpt-attnres-repro (PreNorm twin)", model(ids).logits, nanogpt_head(sd, x)) <= TOL
    report = model.import_report
    assert model.config.residual == "prenorm" and report.trained_steps == 900
    aliases = [line for line in report.ignored if "same tensor" in line]
    assert any("hc_mlp.branch.1.c_fc.weight" in line for line in aliases)
    assert any("hc_attn.branch.norm.weight" in line for line in aliases)


def test_repro_twin_with_hyper_connections_is_refused(tmp_path):
    config = repro_config(2, hc_disable=False, hc_num_streams=4)
    torch.save({"model": repro_twin_state(2, 0), "config": config}, tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match=r"hc_disable=False means hyper-connections with 4 stream"):
        load_model(tmp_path / "ckpt.pt")


# ---- AtinChing/AttnResGPT-next-scale ------------------------------------------------------------
def attnresgpt_shapes(n_layers: int, d_ff: int, attnres: bool) -> dict[str, tuple]:
    shapes = {"token_embedding.weight": (V, D), "position_embedding.weight": (T, D)}
    for i in range(n_layers):
        p = f"blocks.{i}."
        if attnres:
            for site in ("pre_attn_res", "pre_mlp_res"):
                shapes |= {p + site + ".query": (D,), p + site + ".key_norm.weight": (D,)}
        shapes |= {p + "attn_norm.weight": (D,), p + "mlp_norm.weight": (D,)}
        shapes |= {p + "attn.qkv_proj.weight": (3 * D, D), p + "attn.qkv_proj.bias": (3 * D,)}
        shapes |= {p + "attn.out_proj.weight": (D, D), p + "attn.out_proj.bias": (D,)}
        shapes |= {p + "mlp.fc_in.weight": (d_ff, D), p + "mlp.fc_in.bias": (d_ff,)}
        shapes |= {p + "mlp.fc_out.weight": (D, d_ff), p + "mlp.fc_out.bias": (D,)}
    if attnres:
        shapes |= {"final_residual.query": (D,), "final_residual.key_norm.weight": (D,)}
    return shapes | {"final_norm.weight": (D,)}


def attnresgpt_sublayer(sd: dict, s: int, x: torch.Tensor, eps: float) -> torch.Tensor:
    p = f"blocks.{s // 2}."
    if s % 2 == 0:
        x = rms(x, sd[p + "attn_norm.weight"], eps)
        w = [
            sd[p + "attn." + n]
            for n in ("qkv_proj.weight", "qkv_proj.bias", "out_proj.weight", "out_proj.bias")
        ]
        return causal_attention(x, *w)
    x = F.gelu(
        F.linear(
            rms(x, sd[p + "mlp_norm.weight"], eps), sd[p + "mlp.fc_in.weight"], sd[p + "mlp.fc_in.bias"]
        ),
        approximate="tanh",
    )
    return F.linear(x, sd[p + "mlp.fc_out.weight"], sd[p + "mlp.fc_out.bias"])


def attnresgpt_reference(sd: dict, model_cfg: dict, ids: torch.Tensor) -> torch.Tensor:
    """GPTBaseline / GPTAttnRes (history of outputs) / GPTBlockAttnRes (blocks of the layer split)."""
    cfg, eps = model_cfg["attnres"], model_cfg["norm_eps"]
    n = model_cfg["n_layers"]
    x0 = sd["token_embedding.weight"][ids] + sd["position_embedding.weight"][: ids.shape[1]]

    def mix(name, sources):
        return depth_mix(sources, sd[name + ".query"], sd[name + ".key_norm.weight"], eps)

    def site(s):
        return f"blocks.{s // 2}." + ("pre_attn_res" if s % 2 == 0 else "pre_mlp_res")

    if model_cfg["architecture"] == "baseline":
        x = x0
        for s in range(2 * n):
            x = x + attnresgpt_sublayer(sd, s, x, eps)
    elif model_cfg["architecture"] == "attnres" and cfg["mode"] == "full":
        history = [x0]
        for s in range(2 * n):
            history.append(attnresgpt_sublayer(sd, s, mix(site(s), history), eps))
        x = mix("final_residual", history) if cfg["final_readout"] else history[-1]
    else:
        base, extra = divmod(n, cfg["num_blocks"])
        ends = np.cumsum([base + (i < extra) for i in range(cfg["num_blocks"])]) - 1
        blocks, partial = [x0], None
        for layer in range(n):
            for s in (2 * layer, 2 * layer + 1):
                out = attnresgpt_sublayer(
                    sd, s, mix(site(s), blocks + ([partial] if partial is not None else [])), eps
                )
                partial = out if partial is None else partial + out
            if layer in ends:
                blocks, partial = blocks + [partial], None
        x = mix("final_residual", blocks) if cfg["final_readout"] else blocks[-1]
    return rms(x, sd["final_norm.weight"], eps) @ sd["token_embedding.weight"].T


def attnresgpt_model_cfg(architecture: str, n_layers: int = 3, **attnres) -> dict:
    """The model: section of a config.snapshot.yaml (save_config of the run's Config)."""
    defaults = dict(
        enabled=architecture != "baseline",
        mode="block" if architecture == "block_attnres" else "full",
        num_blocks=None,
        window_size=None,
        temperature=1.0,
        rmsnorm_keys=True,
        zero_init_queries=True,
        include_embedding=True,
        keep_embedding_in_window=True,
        final_readout=True,
    )
    return dict(
        architecture=architecture,
        size_name="small",
        vocab_size=V,
        max_seq_len=T,
        d_model=D,
        n_layers=n_layers,
        n_heads=H,
        d_ff=48,
        dropout=0.1,
        bias=True,
        tie_weights=True,
        norm_eps=1e-5,
        init_std=0.02,
        attnres=defaults | attnres,
    )


def write_attnresgpt_run(root, model_cfg: dict, seed: int = 0, step: int = 300):
    """outputs/runs/<run>/config.snapshot.yaml + outputs/checkpoints/<run>/step_0000300.pt, as
    train.py writes them (the checkpoint's rng_state holds numpy's RNG state)."""
    run = f"{model_cfg['architecture']}_small_ctx{T}_seed1337"
    attnres = model_cfg["architecture"] != "baseline"
    sd = random_tensors(attnresgpt_shapes(model_cfg["n_layers"], model_cfg["d_ff"], attnres), seed)
    sd["lm_head.weight"] = sd["token_embedding.weight"]
    (root / "runs" / run).mkdir(parents=True)
    (root / "checkpoints" / run).mkdir(parents=True)
    snapshot = {
        "experiment": {"name": "tiny", "seed": 1337},
        "data": {"tokenizer_name": "gpt2"},
        "model": model_cfg,
    }
    (root / "runs" / run / "config.snapshot.yaml").write_text(yaml.safe_dump(snapshot, sort_keys=False))
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    payload = dict(
        global_step=step,
        config_hash="0123abcd",
        model_type=model_cfg["architecture"],
        size="small",
        context=T,
        tokenizer_name="gpt2",
        run_name=run,
        model=sd,
        optimizer={"state": {}, "param_groups": [{"lr": 3e-4, "betas": (0.9, 0.95), "params": [0]}]},
        scheduler={"last_epoch": step, "_step_count": step + 1},
        scaler=None,
        best_val_loss=2.5,
        cumulative_tokens_seen=step * 2048,
        cumulative_sequences_seen=step * 16,
        elapsed_time_sec=12.5,
        rng_state=rng,
    )
    path = root / "checkpoints" / run / f"step_{step:07d}.pt"
    torch.save(payload, path)
    return path, sd


@pytest.mark.parametrize(
    ("architecture", "n_layers", "attnres"),
    [
        ("baseline", 3, {}),
        ("attnres", 3, {}),
        ("attnres", 3, {"final_readout": False}),
        ("block_attnres", 4, {"num_blocks": 2}),
        ("attnres", 5, {"mode": "block", "num_blocks": 2}),  # uneven: blocks of 3 and 2 layers
        ("block_attnres", 3, {"num_blocks": 1, "final_readout": False}),
    ],
)
def test_attnresgpt_step_checkpoint_imports_exactly(tmp_path, ids, architecture, n_layers, attnres):
    model_cfg = attnresgpt_model_cfg(architecture, n_layers, **attnres)
    path, sd = write_attnresgpt_run(tmp_path, model_cfg, seed=n_layers)
    with pytest.raises(Exception, match="Weights only load failed"):  # the numpy RNG state
        torch.load(path, weights_only=True)
    model = load_model(path)
    with torch.no_grad():
        assert measured("attnresgpt", model(ids).logits, attnresgpt_reference(sd, model_cfg, ids)) <= TOL
    report = model.import_report
    assert report.format == "attnresgpt" and report.trained_steps == 300
    assert any("config.snapshot.yaml" in note for note in report.notes)
    expected_S = {(4, 2): 4, (5, 2): 6, (3, 1): 6}.get((n_layers, attnres.get("num_blocks")))
    assert model.config.attnres_block_size == expected_S


@pytest.mark.parametrize(
    ("architecture", "n_layers", "attnres", "message"),
    [
        ("attnres", 3, {"temperature": 0.5}, r"attnres\.temperature=0\.5 .*not supported"),
        ("attnres", 3, {"window_size": 2}, r"attnres\.window_size=2 \(a sliding window over depth\)"),
        ("attnres", 3, {"rmsnorm_keys": False}, r"rmsnorm_keys=false"),
        ("block_attnres", 6, {"num_blocks": 4}, r"num_blocks=4 over 6 layers gives blocks of \[2, 2, 1, 1\]"),
    ],
)
def test_attnresgpt_settings_we_cannot_run_are_refused(tmp_path, architecture, n_layers, attnres, message):
    path, _ = write_attnresgpt_run(tmp_path, attnresgpt_model_cfg(architecture, n_layers, **attnres))
    with pytest.raises(CheckpointError, match=message):
        load_model(path)


def test_attnresgpt_without_its_run_config_says_where_it_looked(tmp_path):
    path, _ = write_attnresgpt_run(tmp_path, attnresgpt_model_cfg("attnres"))
    (tmp_path / "runs" / path.parent.name / "config.snapshot.yaml").unlink()
    with pytest.raises(CheckpointError, match=r"holds only weights; its architecture is in the run's"):
        load_model(path)


def test_numpy_object_arrays_stay_refused(tmp_path):
    """Only plain numeric numpy arrays are allow-listed; an object array is still refused."""
    torch.save(
        {"model": {"w": torch.zeros(1)}, "extra": np.array([None, "x"], dtype=object)}, tmp_path / "a.pt"
    )
    with pytest.raises(CheckpointError, match=r"refused by the safe loader \(it refers to the Python object"):
        load_model(tmp_path / "a.pt")


# ---- jon123boss/LR-AttnRes ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model_args", "message"),
    [
        (
            {"use_lrid": True, "lrid_rank": 64, "use_attnres": True},
            r"use_lrid=True .*rank 64.*low-rank variant",
        ),
        ({"use_lrid": False, "use_attnres": True, "attnres_type": "block"}, r"attnres_block_average=True"),
        ({"use_lrid": False, "use_attnres": False, "norm_pos": "after"}, r"norm_pos='after'"),
    ],
)
def test_lr_attnres_is_refused_naming_the_setting(tmp_path, model_args, message):
    state = {
        "transformer.wte.weight": torch.zeros(V, D),
        "transformer.layers.0.attn.c_attn.weight": torch.zeros(3 * D, D),
    }
    path = tmp_path / "ckpt_step:1000.pt"
    torch.save({"step": 1000, "model": state, "config": {}, "model_args": model_args}, path)
    with pytest.raises(
        CheckpointError, match=r"ckpt_step:1000\.pt is a jon123boss/LR-AttnRes checkpoint: .*" + message
    ):
        load_model(path)


# ---- the conventions inside our model: lint, the source rule, our own format ---------------------
def pr_model(tmp_path, n_layer: int = 3, S: int = 2):
    sd = with_tied_head(nanogpt_res(random_tensors(nanogpt_shapes(n_layer), 5), n_layer, 6))
    torch.save(
        nanogpt_ckpt(sd, gpt_args(n_layer, attn_res=True, attn_res_block_size=S)), tmp_path / "ckpt.pt"
    )
    return load_model(tmp_path / "ckpt.pt")


def test_lint_reports_a_peers_conventions_as_conventions(tmp_path):
    findings = lint_model(pr_model(tmp_path))
    assert not [
        f
        for f in findings
        if f.code in ("missing-readout", "embedding-twice", "alpha-sum", "block-size-unit")
    ]
    conventions = " ".join(f.message for f in findings if f.code == "convention" and f.severity == "info")
    assert "final readout: none" in conventions and "twice: b_0 and inside block 1" in conventions
    assert "boundaries before Transformer layers" in conventions


def test_lint_still_flags_a_lost_readout_of_our_own_rule(tmp_path):
    model = pr_model(tmp_path)  # the same weights read with our conventions: the readout query is zero
    ours = Model(dataclasses.replace(model.config, readout="attnres", first_block_has_embedding=False))
    ours.load_state_dict(model.state_dict(), strict=False)
    assert "missing-readout" in {f.code for f in lint_model(ours)}


@pytest.mark.parametrize(("readout", "first_block"), [("none", True), ("none", False), ("sum", False)])
def test_source_rule_rebuilds_what_the_model_mixed(ids, readout, first_block):
    """Each site's h_l equals its recorded weights times the sources sources.py rebuilds."""
    config = ModelConfig(
        vocab_size=V,
        block_size=T,
        n_layer=3,
        n_head=H,
        d_model=D,
        residual="block",
        attnres_block_size=4,
        readout=readout,
        first_block_has_embedding=first_block,
    )
    torch.manual_seed(0)
    model = Model(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".query"):
                p.normal_()
        it = model(ids, return_internals=True).internals
    rule = SourceRule.of(config)
    assert it.depth_sources[0] == (("emb", "partial") if first_block else ("emb",))
    for l, (h, weights) in enumerate(zip(it.layer_inputs, it.depth_weights, strict=True), start=1):
        sources = torch.stack(source_tensors(rule, l, it.embedding, it.sublayer_outputs))
        assert torch.allclose(torch.einsum("btk,kbtd->btd", weights, sources), h, atol=1e-5)
    outputs = it.sublayer_outputs
    last_block = sum(outputs[4:6], torch.zeros_like(it.embedding))  # L = 6, S = 4: block 2 = v_5 + v_6
    expected = {"none": last_block, "sum": sum(outputs, torch.zeros_like(it.embedding))}[readout]
    assert torch.allclose(it.layer_inputs[-1], expected, atol=1e-5)


def test_an_imported_peer_saves_and_reloads_bit_for_bit(tmp_path, ids):
    model = pr_model(tmp_path)
    save_model(model, tmp_path / "ours")
    again = load_model(tmp_path / "ours")
    assert again.config == model.config and torch.equal(again(ids).logits, model(ids).logits)


@pytest.mark.parametrize("name", ["shakespeare-prenorm", "shakespeare-full", "shakespeare-block"])
def test_old_config_files_load_with_our_conventions(name):
    raw = json.loads((SAMPLES / name / "config.json").read_text())
    assert "readout" not in raw and "first_block_has_embedding" not in raw  # written before the fields
    model = load_model(SAMPLES / name)
    assert model.config.readout == "attnres" and not model.config.first_block_has_embedding
    assert hasattr(model, "out_res") == (model.config.residual != "prenorm")


# ---- Zefan-Cai/open-attention-residuals qwen3_attnres ------------------------------------------
def qwen3_attnres_dir(tmp_path, n_layer: int = 3, num_blocks: int = 2, **attnres):
    """What save_pretrained of Qwen3AttnResForCausalLM writes: config.json (model_type qwen3_attnres and
    its attnres_* fields) and model.safetensors (model.* keys; the tied lm_head left out)."""
    from safetensors.torch import save_file
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=V,
        hidden_size=D,
        intermediate_size=64,
        num_hidden_layers=n_layer,
        num_attention_heads=H,
        num_key_value_heads=2,
        head_dim=16,  # != D / H
        max_position_embeddings=T,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        attn_implementation="eager",
    )
    torch.manual_seed(n_layer + num_blocks)
    body = Qwen3ForCausalLM(config).eval()
    sd = {k: v.detach().clone() for k, v in body.state_dict().items() if k != "lm_head.weight"}
    for name in [k for k in sd if k.endswith("norm.weight")]:
        sd[name] = 1 + 0.2 * torch.randn_like(sd[name])
    sites = [f"model.layers.{i}.{k}_res_" for i in range(n_layer) for k in ("attn", "mlp")] + [
        "model.final_res_"
    ]
    for site in sites:
        sd[site + "proj.weight"] = 0.5 * torch.randn(1, D)
        sd[site + "norm.weight"] = 1 + 0.2 * torch.randn(D)
        sd[site + "bias"] = torch.tensor(3.0) + torch.randn(())
    body.load_state_dict(sd, strict=False)  # the Qwen3 body the reference forward runs
    raw = config.to_dict() | {"model_type": "qwen3_attnres", "architectures": ["Qwen3AttnResForCausalLM"]}
    raw |= dict(attnres_mode="block", attnres_num_blocks=num_blocks, attnres_recency_bias_init=3.0)
    raw |= dict(attnres_gate_type="bias", attnres_use_null_source=False) | attnres
    (tmp_path / "config.json").write_text(json.dumps(raw))
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "model.safetensors"))
    return body, sd, raw


def qwen3_attnres_reference(body, sd: dict, raw: dict, ids: torch.Tensor) -> torch.Tensor:
    """modeling_qwen3_attnres block mode: blocks = [x], partial = x; before each sublayer a softmax over
    blocks + [partial] with the site's bias on the last logit; at the first layer of a new block
    (every ceil(L / num_blocks) layers) the partial is pushed and restarts at zero; the readout mixes
    once more with final_res_*; Qwen3's own attention, MLP and norms from transformers."""
    model, n = body.model, ids.shape[1]
    layers_per_block = max(1, -(-raw["num_hidden_layers"] // raw["attnres_num_blocks"]))
    x = model.embed_tokens(ids)
    rope = model.rotary_emb(x, torch.arange(n)[None])
    mask = torch.full((n, n), float("-inf")).triu(1)[None, None]

    def mix(site, blocks, partial):
        values = torch.stack(blocks + [partial])
        keys = rms(values, sd[site + "norm.weight"], raw["rms_norm_eps"])
        logits = torch.einsum("d,nbtd->nbt", sd[site + "proj.weight"][0], keys)
        logits = torch.cat([logits[:-1], logits[-1:] + sd[site + "bias"]])
        return torch.einsum("nbt,nbtd->btd", logits.softmax(0), values)

    blocks, partial = [x], x
    for i, layer in enumerate(model.layers):
        h = mix(f"model.layers.{i}.attn_res_", blocks, partial)
        if i > 0 and i % layers_per_block == 0:
            blocks, partial = blocks + [partial], torch.zeros_like(partial)
        attn, _ = layer.self_attn(layer.input_layernorm(h), position_embeddings=rope, attention_mask=mask)
        partial = partial + attn
        h = mix(f"model.layers.{i}.mlp_res_", blocks, partial)
        partial = partial + layer.mlp(layer.post_attention_layernorm(h))
    return model.norm(mix("model.final_res_", blocks, partial)) @ model.embed_tokens.weight.T


@pytest.mark.parametrize(("n_layer", "num_blocks"), [(3, 2), (4, 4), (2, 1)])
def test_qwen3_attnres_block_mode_imports_exactly(tmp_path, ids, n_layer, num_blocks):
    body, sd, raw = qwen3_attnres_dir(tmp_path, n_layer, num_blocks)
    model = load_model(tmp_path)
    with torch.no_grad():
        reference = qwen3_attnres_reference(body, sd, raw, ids)
        assert measured("qwen3-attnres", model(ids).logits, reference) <= TOL
    cfg = model.config
    assert cfg.attnres_block_size == 2 * -(-n_layer // num_blocks) and cfg.first_block_has_embedding
    assert cfg.depth_recency_bias and cfg.qk_norm and cfg.head_dim == 16 and cfg.n_kv_head == 2
    assert ("model.final_res_bias", "out_res.recency_bias") in model.import_report.mapped
    assert not [f for f in lint_model(model) if f.severity != "info"]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"attnres_mode": "full"}, r"attnres_mode='full' attends over cumulative hidden states"),
        ({"attnres_mode": "delta"}, r"attnres_mode='delta' adds a softmax over sublayer outputs"),
        ({"attnres_gate_type": "sigmoid_scalar"}, r"attnres_gate_type='sigmoid_scalar' mixes the depth mix"),
    ],
)
def test_qwen3_attnres_modes_that_are_not_attnres_are_refused(tmp_path, setting, message):
    qwen3_attnres_dir(tmp_path, **setting)
    with pytest.raises(CheckpointError, match=message):
        load_model(tmp_path)


# ---- jibran/Attention-Residuals ---------------------------------------------------------------
JIBRAN_HEAD_DIM, JIBRAN_MULT = 12, 2  # head_dim != D / H; SwiGLU hidden = D * mlp_multiplier


def jibran_state(n_layer: int, attnres: bool, seed: int) -> dict:
    inner, hidden = H * JIBRAN_HEAD_DIM, D * JIBRAN_MULT
    shapes = {"tok_embed.weight": (V, D), "pos_embed.weight": (T, D), "norm.weight": (D,)}
    for i in range(n_layer):
        p = f"layers.{i}."
        shapes |= {p + "attn_norm.weight": (D,), p + "mlp_norm.weight": (D,)}
        shapes |= {p + "attn.qkv.weight": (3 * inner, D), p + "attn.proj.weight": (D, inner)}
        shapes |= {
            p + "mlp.gate.weight": (hidden, D),
            p + "mlp.up.weight": (hidden, D),
            p + "mlp.down.weight": (D, hidden),
        }
        if attnres:
            for site in ("attn_res_attn", "attn_res_mlp"):
                shapes |= {p + site + ".query_vec": (D,), p + site + ".key_norm.weight": (D,)}
    sd = random_tensors(shapes, seed)
    return sd | {"head.weight": sd["tok_embed.weight"]}  # head.weight = tok_embed.weight


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def jibran_attention(sd: dict, p: str, x: torch.Tensor) -> torch.Tensor:
    """qkv chunked in three, heads of head_dim, RoPE (base 10000, cat(freqs, freqs)), causal SDPA."""
    B, n, _ = x.shape
    q, k, v = (
        t.view(B, n, H, JIBRAN_HEAD_DIM).transpose(1, 2)
        for t in F.linear(x, sd[p + "qkv.weight"]).chunk(3, -1)
    )
    inv_freq = 1.0 / (10_000 ** (torch.arange(0, JIBRAN_HEAD_DIM, 2, dtype=torch.float32) / JIBRAN_HEAD_DIM))
    freqs = torch.outer(torch.arange(n, dtype=torch.float32), inv_freq)
    cos, sin = torch.cat([freqs, freqs], -1).cos(), torch.cat([freqs, freqs], -1).sin()
    q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, n, -1)
    return F.linear(y, sd[p + "proj.weight"])


def jibran_reference(ckpt: dict, ids: torch.Tensor) -> torch.Tensor:
    """AttnResLM (Full: each sublayer mixes [v_0, v_1, ..]; output norm(v_1 + .. + v_L)) or BaselineLM."""
    sd, cfg = ckpt["model_state"], ckpt["config"]["model"]
    eps, attnres = cfg["norm_eps"], "layers.0.attn_res_attn.query_vec" in ckpt["model_state"]
    x = sd["tok_embed.weight"][ids] + sd["pos_embed.weight"][: ids.shape[1]]
    outputs = [x]
    for i in range(cfg["depth"]):
        p = f"layers.{i}."
        for kind, site in (("attn", "attn_res_attn"), ("mlp", "attn_res_mlp")):
            h = (
                depth_mix(outputs, sd[p + site + ".query_vec"], sd[p + site + ".key_norm.weight"], eps)
                if attnres
                else x
            )
            h = rms(h, sd[p + kind + "_norm.weight"], eps)
            if kind == "attn":
                out = jibran_attention(sd, p + "attn.", h)
            else:
                out = F.linear(
                    F.silu(F.linear(h, sd[p + "mlp.gate.weight"])) * F.linear(h, sd[p + "mlp.up.weight"]),
                    sd[p + "mlp.down.weight"],
                )
            outputs.append(out)
            x = x + out
    final = sum(outputs[1:]) if attnres else x
    return rms(final, sd["norm.weight"], eps) @ sd["head.weight"].T


def jibran_ckpt(n_layer: int, attnres: bool, **model) -> dict:
    """CheckpointManager.save's payload (checkpoints/best/best.pt)."""
    cfg = dict(name="AttnResTransformer_Full", dim=D, depth=n_layer, heads=H, head_dim=JIBRAN_HEAD_DIM)
    cfg |= dict(
        mlp_multiplier=JIBRAN_MULT, dropout=0.1, use_block_attn_res=False, block_size=4, norm_eps=1e-6
    )
    cfg |= dict(use_xsa=False, use_kv_cache=False, max_seq_len=T) | model
    config = {
        "model": cfg,
        "training": {"epochs": 20, "lr": 3e-4},
        "data": {"dataset": "shakespeare", "seq_len": T},
    }
    return dict(
        model_state=jibran_state(n_layer, attnres, seed=n_layer),
        optimizer_state={"state": {}, "param_groups": [{"lr": 3e-4, "params": [0]}]},
        scheduler_state=None,
        epoch=3,
        step=1200,
        val_loss=1.4,
        val_acc=0.6,
        config=config,
    )


@pytest.mark.parametrize("attnres", [True, False])
def test_jibran_checkpoint_imports_exactly(tmp_path, ids, attnres):
    ckpt = jibran_ckpt(3, attnres)
    (tmp_path / "checkpoints" / "best").mkdir(parents=True)
    torch.save(ckpt, tmp_path / "checkpoints" / "best" / "best.pt")
    model = load_model(tmp_path / "checkpoints" / "best" / "best.pt")
    with torch.no_grad():
        assert measured("jibran-attnres", model(ids).logits, jibran_reference(ckpt, ids)) <= TOL
    assert (
        model.config.residual == ("full" if attnres else "prenorm")
        and model.import_report.trained_steps == 1200
    )
    assert (
        model.config.readout == ("sum" if attnres else "attnres") and model.config.position == "learned+rope"
    )
    if attnres:
        assert not [f for f in lint_model(model) if f.severity != "info"]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"use_block_attn_res": True}, r"use_block_attn_res=true is refused: its block boundaries"),
        ({"use_xsa": True}, r"use_xsa=true \(Exclusive Self Attention\)"),
    ],
)
def test_jibran_block_attnres_and_xsa_are_refused(tmp_path, model, message):
    torch.save(jibran_ckpt(2, True, **model), tmp_path / "latest.pt")
    with pytest.raises(CheckpointError, match=message):
        load_model(tmp_path / "latest.pt")
