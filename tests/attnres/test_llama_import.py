"""Llama-family HF directories and fla Transformer directories import exactly, or are refused.

The Llama / Qwen2 / Qwen3 / Mistral references are transformers' own classes, built from tiny random
configs here and saved with save_pretrained. fla's files are written by hand with its key names and
config fields; its PreNorm model is compared with transformers' Llama (the same block) holding the
same weights, its AttnRes models with an independent forward written below from fla's conventions.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from attnres import CheckpointError, Model, ModelConfig, load_model
from attnres.config import BLOCK_FAMILIES, FAMILY_FIELDS
from tests.attnres.test_importers import byte_level_bpe

VOCAB, TOL = 300, 1e-4
ROOT = Path(__file__).resolve().parents[2]
SIZES = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=4, intermediate_size=48, max_position_embeddings=64)  # fmt: skip
CASES = {
    "llama GQA, untied": (LlamaForCausalLM, LlamaConfig, dict(num_key_value_heads=2)),
    "llama tied, linear RoPE, biases": (
        LlamaForCausalLM, LlamaConfig,
        dict(tie_word_embeddings=True, attention_bias=True, mlp_bias=True, rope_theta=500.0,
             rope_scaling={"rope_type": "linear", "factor": 2.5}),
    ),
    "qwen2 GQA, q/k/v biases": (Qwen2ForCausalLM, Qwen2Config, dict(num_key_value_heads=1)),
    "qwen3 q/k norm, head_dim 12, tied": (
        Qwen3ForCausalLM, Qwen3Config, dict(head_dim=12, num_key_value_heads=2, tie_word_embeddings=True),
    ),
    "mistral GQA": (MistralForCausalLM, MistralConfig, dict(num_key_value_heads=2, sliding_window=None)),
}  # fmt: skip


def hf_model(cls, config_cls, seed: int = 0, **fields):
    """A tiny random HF model whose norm gains and biases are moved off their init and whose
    attention is sharpened (q and k weights x8), so a mix-up of positions or parts shows."""
    torch.manual_seed(seed)
    model = cls(config_cls(**{**SIZES, **fields})).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.2 * torch.randn_like(p))
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                p.mul_(8.0)
    return model


@pytest.fixture
def ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 40), generator=torch.Generator().manual_seed(1))


def max_diff(model, reference, ids) -> float:
    with torch.no_grad():
        return (model(ids).logits - reference(ids).logits).abs().max().item()


# ---- transformers' Llama family ------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_llama_family_directory_matches_transformers(tmp_path, ids, case):
    cls, config_cls, fields = CASES[case]
    hf = hf_model(cls, config_cls, **fields)
    hf.save_pretrained(tmp_path)
    model = load_model(tmp_path)
    assert max_diff(model, hf, ids) <= TOL
    report = model.import_report
    assert report.format == f"hf-{hf.config.model_type}"
    assert report.n_params == sum(p.numel() for p in hf.parameters())  # a tied head counted once
    assert model.config.tie_embeddings == bool(fields.get("tie_word_embeddings", False))
    assert bool(report.tied) == model.config.tie_embeddings
    assert ("model.layers.1.self_attn.k_proj.weight", "blocks.1.attn.c_attn.weight[k]") in report.mapped
    assert model.config.kv_heads == hf.config.num_key_value_heads


def test_linear_rope_scaling_is_what_makes_the_numbers_match(tmp_path, ids):
    cls, config_cls, fields = CASES["llama tied, linear RoPE, biases"]
    hf = hf_model(cls, config_cls, **fields)
    hf.save_pretrained(tmp_path)
    plain = hf_model(cls, config_cls, **{**fields, "rope_scaling": None})  # same seed, same weights
    assert max_diff(load_model(tmp_path), plain, ids) > 1e-3
    assert load_model(tmp_path).config.rope_linear_factor == 2.5


def test_sharded_safetensors_and_pytorch_model_bin(tmp_path, ids):
    hf = hf_model(*CASES["qwen2 GQA, q/k/v biases"][:2], **CASES["qwen2 GQA, q/k/v biases"][2])
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="40KB")
    assert len(list((tmp_path / "sharded").glob("model-*-of-*.safetensors"))) > 1
    assert max_diff(load_model(tmp_path / "sharded"), hf, ids) <= TOL
    hf.config.save_pretrained(tmp_path / "bin")
    torch.save(hf.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    assert max_diff(load_model(tmp_path / "bin"), hf, ids) <= TOL


def test_sharded_index_that_points_outside_or_misses_a_tensor_is_refused(tmp_path):
    hf = hf_model(LlamaForCausalLM, LlamaConfig)
    hf.save_pretrained(tmp_path, max_shard_size="40KB")
    index_path = tmp_path / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["model.norm.weight"] = "../elsewhere.safetensors"
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="a shard must be a file beside it"):
        load_model(tmp_path)
    shard = next(iter(sorted(set(index["weight_map"].values()) - {"../elsewhere.safetensors"})))
    index["weight_map"]["model.norm.weight"] = shard if shard != "x" else "y"
    index["weight_map"]["model.not_there.weight"] = shard
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="is not in the shard"):
        load_model(tmp_path)


def test_tokenizer_json_beside_it_is_used(tmp_path):
    hf_model(LlamaForCausalLM, LlamaConfig).save_pretrained(tmp_path)
    byte_level_bpe(VOCAB).save(str(tmp_path / "tokenizer.json"))
    tokenizer = load_model(tmp_path).tokenizer
    assert tokenizer.decode(tokenizer.encode("To be, or not to be")) == "To be, or not to be"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}}, "RoPE type 'yarn'"),
        (
            {"rope_parameters": {"rope_type": "llama3", "factor": 8.0, "rope_theta": 1e4}},
            "RoPE type 'llama3'",
        ),
        ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
        ({"model_type": "mistral", "sliding_window": 16}, r"sliding-window attention \(sliding_window=16"),
        ({"model_type": "qwen2", "use_sliding_window": True, "sliding_window": 8}, "sliding-window"),
        ({"model_type": "gpt_neox"}, "parallel residual"),
        (
            {"model_type": "bert"},
            "model_type 'bert'; the ones that can be imported are gpt2, transformer, llama",
        ),
        ({"num_hidden_layers": 3}, "missing blocks.2"),
    ],
)
def test_what_is_not_run_exactly_is_refused_in_one_sentence(tmp_path, change, message):
    hf_model(LlamaForCausalLM, LlamaConfig).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(CheckpointError, match=message):
        load_model(tmp_path)


def test_sliding_window_covering_the_context_runs_as_full_attention(tmp_path, ids):
    hf = hf_model(MistralForCausalLM, MistralConfig, sliding_window=64)
    hf.save_pretrained(tmp_path)
    model = load_model(tmp_path)
    assert max_diff(model, hf, ids) <= TOL
    assert any("covers the whole context" in note for note in model.import_report.notes)


# ---- the three residual rules on the Llama block --------------------------------------------
def test_every_residual_rule_runs_on_the_llama_block():
    fields = dict(vocab_size=50, block_size=16, n_layer=3, n_head=4, d_model=32, n_kv_head=2, qk_norm=True)
    ids = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(0))
    logits = {}
    for residual, size in (("full", None), ("block", 1), ("block", 4)):
        torch.manual_seed(0)
        config = ModelConfig(**fields, **BLOCK_FAMILIES["llama"], residual=residual, attnres_block_size=size)
        model = Model(config).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith(("query", "norm.weight")):
                    p.copy_(torch.randn_like(p))
            out = model(ids, depth_impl="sequential", return_internals=True)
            fast = model(ids, depth_impl="two_phase").logits
        assert (out.logits - fast).abs().max().item() < 1e-5
        assert len(out.internals.sublayer_outputs) == 6 and model.wpe is None
        logits[residual, size] = out.logits
    assert (logits["full", None] - logits["block", 1]).abs().max().item() < 1e-5  # S = 1 is Full
    assert (logits["full", None] - logits["block", 4]).abs().max().item() > 1e-3


# ---- fla-org/flash-linear-attention TransformerForCausalLM --------------------------------
FLA_NAMES = {  # transformers' Llama key fragment -> fla's
    "embed_tokens": "embeddings", "input_layernorm": "attn_norm", "post_attention_layernorm": "mlp_norm",
    "self_attn": "attn",
}  # fmt: skip


def fla_config(hf_config, **fields) -> dict:
    """config.json as fla's TransformerConfig writes it, for the same architecture."""
    return {
        "model_type": "transformer", "architectures": ["TransformerForCausalLM"],
        "hidden_size": hf_config.hidden_size, "num_hidden_layers": hf_config.num_hidden_layers,
        "num_heads": hf_config.num_attention_heads, "num_kv_heads": hf_config.num_key_value_heads,
        "qkv_bias": False, "qk_norm": False, "window_size": None, "rope_theta": 10000.0,
        "max_position_embeddings": hf_config.max_position_embeddings, "hidden_ratio": 4,
        "intermediate_size": None, "hidden_act": "swish", "norm_eps": hf_config.rms_norm_eps,
        "tie_word_embeddings": False, "fuse_norm": True, "fuse_swiglu": True, "vocab_size": VOCAB,
        "attnres_block_size": None, **fields,
    }  # fmt: skip


def fla_state(hf) -> dict:
    state = {}
    for name, tensor in hf.state_dict().items():
        for ours, theirs in FLA_NAMES.items():
            name = name.replace(ours, theirs)
        state[name] = tensor.clone()
    return state


def write_fla(directory, config: dict, state: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in state.items()}, str(directory / "model.safetensors"))


FLA_PRENORM = {  # fla setting -> the transformers class with the same block
    "plain": (LlamaForCausalLM, LlamaConfig, {}, {}),
    "GQA + q/k/v bias": (Qwen2ForCausalLM, Qwen2Config, dict(num_key_value_heads=2), {"qkv_bias": True}),
    "q/k norm (fla eps 1e-5)": (
        Qwen3ForCausalLM,
        Qwen3Config,
        dict(rms_norm_eps=1e-5, head_dim=8),
        {"qk_norm": True},
    ),
}


@pytest.mark.parametrize("case", list(FLA_PRENORM))
def test_fla_prenorm_transformer_matches_transformers_llama(tmp_path, ids, case):
    cls, config_cls, hf_fields, fla_fields = FLA_PRENORM[case]
    hf = hf_model(cls, config_cls, **{**hf_fields, "intermediate_size": 256})  # fla: 2/3 * 4 * 32 -> 256
    write_fla(tmp_path, fla_config(hf.config, **fla_fields), fla_state(hf))
    model = load_model(tmp_path)
    assert max_diff(model, hf, ids) <= TOL
    assert model.import_report.format == "fla-transformer" and model.config.residual == "prenorm"


def fla_attnres_forward(hf, params: dict, block_size: int, tokens: torch.Tensor) -> torch.Tensor:
    """fla's AttnRes TransformerModel written out: a running prefix sum and the list of completed
    sources, a sublayer whose 0-based index is a multiple of block_size starting a new block; each
    mix is fla's naive_attnres (RMS-normalised keys with gain, softmax over sources, weighted sum of
    the raw sources, then the sublayer's RMSNorm with the same eps). Sublayers are transformers'."""
    eps = hf.config.rms_norm_eps

    def mix(query, norm_weight, out_weight, sources):
        v = torch.stack(sources)  # [K, B, T, d]
        p = (F.rms_norm(v, (v.shape[-1],), norm_weight, eps) @ query).softmax(0)  # [K, B, T]
        return F.rms_norm((p.unsqueeze(-1) * v).sum(0), (v.shape[-1],), out_weight, eps)

    h = hf.model.embed_tokens(tokens)
    rotary = hf.model.rotary_emb(h, torch.arange(tokens.shape[1])[None])
    states, prefix = None, h
    for i, layer in enumerate(hf.model.layers):
        for j, (name, norm) in enumerate(
            (("attn", layer.input_layernorm), ("mlp", layer.post_attention_layernorm))
        ):
            index = 2 * i + j
            if states is None:  # the very first sublayer reads the embedding alone
                x, states, prefix = norm(prefix), [prefix], None
            else:
                sources = [*states, prefix]
                if index % block_size == 0:
                    states, prefix = sources, None
                x = mix(params[f"{i}.{name}.query"], params[f"{i}.{name}.norm"], norm.weight, sources)
            out = (
                layer.self_attn(x, position_embeddings=rotary, attention_mask=None)[0]
                if j == 0
                else layer.mlp(x)
            )
            prefix = out if prefix is None else prefix + out
    h = mix(params["out.query"], params["out.norm"], hf.model.norm.weight, [*states, prefix])
    return hf.lm_head(h)


@pytest.mark.parametrize("block_size", [1, 2, 4])
def test_fla_attnres_transformer_matches_its_conventions(tmp_path, ids, block_size):
    hf = hf_model(LlamaForCausalLM, LlamaConfig, num_hidden_layers=3, num_key_value_heads=2)
    state, params = fla_state(hf), {}
    g = torch.Generator().manual_seed(block_size)
    for site in [f"{i}.{name}" for i in range(3) for name in ("attn", "mlp")] + ["out"]:
        params[f"{site}.query"] = torch.randn(32, generator=g)
        params[f"{site}.norm"] = 1 + 0.3 * torch.randn(32, generator=g)
        prefix = "model." if site == "out" else "model.layers.{}.{}_".format(*site.split("."))
        state[prefix + "res_proj.weight"] = params[f"{site}.query"][None]  # nn.Linear(d, 1): [1, d]
        state[prefix + "res_norm.weight"] = params[f"{site}.norm"]
    config = fla_config(
        hf.config, attnres_block_size=block_size, intermediate_size=48, tie_word_embeddings=False
    )
    write_fla(tmp_path, config, state)
    model = load_model(tmp_path)
    with torch.no_grad():
        reference = fla_attnres_forward(hf, params, block_size, ids)
        assert (model(ids).logits - reference).abs().max().item() <= TOL
        assert (model(ids).logits - hf(ids).logits).abs().max().item() > 1e-2  # depth attention matters
    assert model.config.residual == ("full" if block_size == 1 else "block")
    assert dict(model.import_report.conventions)["block-size unit"].startswith("sublayers")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"window_size": 16}, r"window_size=16 \(sliding-window"),
        ({"hidden_act": "powlu"}, "hidden_act 'powlu'"),
        ({"attnres_block_size": 3}, "attnres_block_size=3 is not one fla accepts"),
    ],
)
def test_fla_settings_we_do_not_run_are_refused(tmp_path, change, message):
    hf = hf_model(LlamaForCausalLM, LlamaConfig, intermediate_size=256)
    write_fla(tmp_path, fla_config(hf.config, **change), fla_state(hf))
    with pytest.raises(CheckpointError, match=message):
        load_model(tmp_path)


@pytest.mark.parametrize("name", ["prenorm", "full", "block"])
def test_shipped_configs_load_unchanged_with_the_new_fields_at_their_defaults(name):
    directory = ROOT / "sample_models" / f"shakespeare-{name}"
    raw = json.loads((directory / "config.json").read_text())
    model = load_model(directory)
    assert all(getattr(model.config, f) == ModelConfig.__dataclass_fields__[f].default for f in FAMILY_FIELDS)
    assert not set(FAMILY_FIELDS) & set(raw) and model.wpe is not None
    assert set(model.state_dict()) - {"lm_head.weight"} == set(
        safe_open_keys(directory / "model.safetensors")
    )


def safe_open_keys(path) -> list[str]:
    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())
