"""Foreign checkpoints import exactly (logits vs. the original) or fail with one clear sentence."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel

from attnres import CheckpointError, Model, ModelConfig, load_model, save_model
from attnres.hf_tokenizer import HFTokenizer
from attnres.importers import ImportReport
from tests.toys import ours_as_nanogpt, ours_as_repro

VOCAB = 300
TOL = 1e-4
TEXT = ["To be, or not to be, that is the question:", "Whether 'tis nobler in the mind to suffer"] * 20


def byte_level_bpe(vocab_size: int = VOCAB) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(TEXT, trainer)
    return tokenizer


def hf_gpt2(activation: str = "gelu_new", seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=2,
        n_embd=32,
        n_head=4,
        vocab_size=VOCAB,
        n_positions=64,
        activation_function=activation,
        bos_token_id=0,
        eos_token_id=0,
    )
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # LayerNorm gains/biases away from their init, so a mix-up shows
        for name, p in model.named_parameters():
            if ".ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture
def ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(1))


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# ---- Hugging Face GPT-2 -------------------------------------------------------------------
def test_hf_gpt2_directory_matches_transformers(tmp_path, ids):
    hf = hf_gpt2()
    hf.save_pretrained(tmp_path)
    byte_level_bpe().save(str(tmp_path / "tokenizer.json"))
    model = load_model(tmp_path)
    with torch.no_grad():
        assert max_diff(model(ids).logits, hf(ids).logits) < TOL
    report = model.import_report
    assert isinstance(report, ImportReport) and report.format == "hf-gpt2"
    assert report.n_params == sum(p.numel() for p in hf.parameters())
    assert ("transformer.h.1.mlp.c_fc.weight", "blocks.1.mlp.c_fc.weight") in report.mapped
    assert report.missing == () and report.tied == (
        "lm_head.weight = wte.weight (the file has no head; GPT-2 ties them)",
    )
    assert model.config.activation == "gelu_tanh" and model.config.norm == "layernorm"
    text = "To be, or not to be"
    assert model.tokenizer.decode(model.tokenizer.encode(text)) == text
    assert model.tokenizer.encode_report("émoji ☃").unknown == ()


def test_hf_tokenizer_is_copied_and_named_when_saved_in_our_format(tmp_path, ids):
    hf_gpt2().save_pretrained(tmp_path / "hf")
    byte_level_bpe().save(str(tmp_path / "hf" / "tokenizer.json"))
    model = load_model(tmp_path / "hf")
    save_model(model, tmp_path / "ours")
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert config["tokenizer"] == {"type": "hf", "file": "tokenizer.json"}
    assert (tmp_path / "ours" / "tokenizer.json").is_file()
    again = load_model(tmp_path / "ours")
    assert again.import_report.format == "attnres-lens"
    assert torch.equal(again(ids).logits, model(ids).logits)
    assert again.tokenizer.encode("the question") == model.tokenizer.encode("the question")


def test_hf_vocab_and_merges_without_tokenizer_json(tmp_path):
    hf_gpt2().save_pretrained(tmp_path)
    byte_level_bpe().model.save(str(tmp_path))  # writes vocab.json + merges.txt
    tokenizer = load_model(tmp_path).tokenizer
    assert isinstance(tokenizer, HFTokenizer)
    assert tokenizer.decode(tokenizer.encode("nobler in the mind")) == "nobler in the mind"


def test_hf_pytorch_model_bin_only_with_weights_only(tmp_path, ids):
    hf = hf_gpt2()
    hf.config.save_pretrained(tmp_path)
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    assert max_diff(load_model(tmp_path)(ids).logits, hf(ids).logits) < TOL
    torch.save({"w": torch.zeros(1), "x": _Payload(tmp_path / "pwned")}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin was refused by the safe loader"):
        load_model(tmp_path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("model_type", "bert", "model_type .bert.; the ones that can be imported"),
        ("activation_function", "swish", "activation_function"),
        ("scale_attn_by_inverse_layer_idx", True, "scale_attn_by_inverse_layer_idx"),
    ],
)
def test_hf_unsupported_config_is_refused(tmp_path, field, value, message):
    hf_gpt2().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config[field] = value
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        load_model(tmp_path)


def test_hf_tokenizer_spec_must_name_a_file_in_the_directory(tmp_path):
    with pytest.raises(ValueError, match="file name"):
        HFTokenizer.from_spec({"type": "hf", "file": "../tokenizer.json"}, tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a valid tokenizer.json"):
        HFTokenizer.from_spec({"type": "hf", "file": "tokenizer.json"}, tmp_path)


# ---- nanoGPT ckpt.pt ------------------------------------------------------------------------
def nanogpt_ckpt(hf: GPT2LMHeadModel, prefix: str = "_orig_mod.") -> dict:
    """The HF weights as nanoGPT stores them: Linear [out, in], tied lm_head saved too."""
    state = {}
    for name, tensor in hf.state_dict().items():
        conv1d = name.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight"))
        state[prefix + name] = tensor.t().contiguous() if conv1d else tensor.clone()
    state[prefix + "lm_head.weight"] = state[prefix + "transformer.wte.weight"]
    state[prefix + "transformer.h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 64, 64))  # old mask buffer
    c = hf.config
    args = dict(
        n_layer=c.n_layer,
        n_head=c.n_head,
        n_embd=c.n_embd,
        block_size=c.n_positions,
        bias=True,
        vocab_size=c.vocab_size,
        dropout=0.0,
    )
    return {
        "model": state,
        "model_args": args,
        "iter_num": 5000,
        "best_val_loss": torch.tensor(1.5),
        "config": {"dataset": "shakespeare_char"},
        "optimizer": {"state": {}, "param_groups": []},
    }


def test_nanogpt_ckpt_matches_transformers_with_exact_gelu(tmp_path, ids):
    hf = hf_gpt2(activation="gelu")
    torch.save(nanogpt_ckpt(hf), tmp_path / "ckpt.pt")
    model = load_model(tmp_path / "ckpt.pt")
    with torch.no_grad():
        assert max_diff(model(ids).logits, hf(ids).logits) < TOL
    report = model.import_report
    assert report.format == "nanogpt" and report.trained_steps == 5000
    assert any("causal-mask buffer" in line for line in report.ignored)
    assert model.config.tie_embeddings and model.tokenizer is None
    assert report.missing == () and report.tied == (
        "lm_head.weight = wte.weight (the file holds two identical copies)",
    )
    assert load_model(tmp_path).import_report.format == "nanogpt"  # the directory works too


def test_nanogpt_meta_pkl_gives_a_char_tokenizer(tmp_path):
    chars = sorted(set("".join(TEXT)))
    meta = {
        "vocab_size": len(chars),
        "itos": dict(enumerate(chars)),
        "stoi": {c: i for i, c in enumerate(chars)},
    }
    torch.save(nanogpt_ckpt(hf_gpt2(activation="gelu")), tmp_path / "ckpt.pt")
    (tmp_path / "meta.pkl").write_bytes(pickle.dumps(meta))
    tokenizer = load_model(tmp_path / "ckpt.pt").tokenizer
    assert tokenizer.kind == "char" and len(tokenizer) == len(chars)
    assert tokenizer.decode(tokenizer.encode("To be")) == "To be"


def test_nanogpt_without_bias_has_layernorm_without_bias(tmp_path, ids):
    config = ModelConfig(
        vocab_size=VOCAB,
        block_size=64,
        n_layer=2,
        n_head=4,
        d_model=32,
        norm="layernorm",
        norm_eps=1e-5,
        bias=False,
        activation="gelu",
    )
    torch.manual_seed(3)
    original = Model(config).eval()
    args = dict(n_layer=2, n_head=4, n_embd=32, block_size=64, bias=False, vocab_size=VOCAB, dropout=0.0)
    torch.save({"model": ours_as_nanogpt(original), "model_args": args}, tmp_path / "ckpt.pt")
    model = load_model(tmp_path / "ckpt.pt")
    assert model.blocks[0].attn_norm.bias is None
    assert max_diff(model(ids).logits, original(ids).logits) < TOL


# ---- AttnRes peers --------------------------------------------------------------------------
def attnres_model(residual: str, block_size: int | None = None) -> Model:
    config = ModelConfig(
        vocab_size=VOCAB,
        block_size=64,
        n_layer=3,
        n_head=4,
        d_model=32,
        residual=residual,
        attnres_block_size=block_size,
        norm="layernorm",
        norm_eps=1e-5,
        bias=True,
        activation="gelu",
        depth_norm_eps=1e-8,
    )
    torch.manual_seed(4)
    model = Model(config).eval()
    with torch.no_grad():  # trained-looking depth attention: non-zero queries, non-unit key gains
        for name, p in model.named_parameters():
            if name.endswith(".query"):
                p.copy_(torch.randn_like(p))
            elif "_res.norm" in name:
                p.copy_(1 + 0.3 * torch.randn_like(p))
    return model


def repro_reference_logits(ckpt: dict, ids: torch.Tensor) -> torch.Tensor:
    """An independent forward written from the repro's documented conventions (docs/formats.md)."""
    sd = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
    c = ckpt["config"]
    d, L, eps = c["n_embd"], 2 * c["n_layer"], c["attnres_eps"]
    queries = sd["attnres_mixer.mixer.queries"]

    def mix(k, sources):
        v = torch.stack(sources)
        keys = (
            v
            * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + eps)
            * sd[f"attnres_mixer.mixer.key_norms.{k}.weight"]
        )
        alpha = torch.einsum("d,sbtd->sbt", queries[k], keys).softmax(0)
        return torch.einsum("sbt,sbtd->btd", alpha, v)

    def ln(x, name):
        return F.layer_norm(x, (d,), sd[name + ".weight"], sd[name + ".bias"], 1e-5)

    def sublayer(j, x):
        p = f"transformer.h.{j // 2}."
        if j % 2 == 0:
            q, k_, v = F.linear(
                ln(x, p + "ln_1"), sd[p + "attn.c_attn.weight"], sd[p + "attn.c_attn.bias"]
            ).split(d, 2)
            heads = [t.view(*t.shape[:2], c["n_head"], -1).transpose(1, 2) for t in (q, k_, v)]
            y = F.scaled_dot_product_attention(*heads, is_causal=True).transpose(1, 2).reshape(x.shape)
            return F.linear(y, sd[p + "attn.c_proj.weight"], sd[p + "attn.c_proj.bias"])
        h = F.gelu(F.linear(ln(x, p + "ln_2"), sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"]))
        return F.linear(h, sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"])

    emb = sd["transformer.wte.weight"][ids] + sd["transformer.wpe.weight"][: ids.shape[1]]
    S = c["attnres_block_size"] if c["attnres_variant"] == "block" else 1
    completed, partial = [emb], None  # block sums (S=1: every sublayer output)
    for j in range(L):
        v = sublayer(j, mix(j, completed + ([partial] if partial is not None else [])))
        partial = v if partial is None else partial + v
        if (j + 1) % S == 0:
            completed, partial = completed + [partial], None
    h = mix(L, completed + ([partial] if partial is not None else []))
    return F.linear(ln(h, "transformer.ln_f"), sd["lm_head.weight"])


@pytest.mark.parametrize(("residual", "block_size"), [("full", None), ("block", 2), ("block", 4)])
def test_repro_checkpoint_imports_exactly(tmp_path, ids, residual, block_size):
    original = attnres_model(residual, block_size)
    ckpt = ours_as_repro(original)
    torch.save(ckpt, tmp_path / "ckpt.pt")
    model = load_model(tmp_path / "ckpt.pt")
    with torch.no_grad():
        expected = original(ids).logits
        assert max_diff(model(ids, depth_impl="sequential").logits, expected) < TOL
        assert max_diff(model(ids, depth_impl="two_phase").logits, expected) < TOL
        assert max_diff(repro_reference_logits(ckpt, ids), expected) < TOL
    report = model.import_report
    assert report.format == "nanogpt-attnres-repro" and report.trained_steps == 800
    assert ("attnres_mixer.mixer.queries[6]", "out_res.query") in report.mapped
    assert model.config.depth_norm_eps == 1e-8 and model.config.norm_eps == 1e-5
    assert any("same tensor" in line and "attn_branch" in line for line in report.ignored)


def test_repro_value_residual_is_refused(tmp_path):
    ckpt = ours_as_repro(attnres_model("full"))
    ckpt["config"]["v_residual"] = True
    torch.save(ckpt, tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match=r"ckpt\.pt: v_residual"):
        load_model(tmp_path / "ckpt.pt")


def test_repro_queries_of_wrong_shape_are_refused(tmp_path):
    ckpt = ours_as_repro(attnres_model("full"))
    ckpt["model"]["_orig_mod.attnres_mixer.mixer.queries"] = torch.zeros(3, 32)
    torch.save(ckpt, tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match=r"queries has shape \[3, 32\]"):
        load_model(tmp_path / "ckpt.pt")


# ---- bad inputs -----------------------------------------------------------------------------
class _Payload:
    """Unpickling this would create a file (open(path, "w")): the test checks that it never does."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickle_that_would_write_a_file_is_refused(tmp_path):
    target = tmp_path / "written_by_pickle"
    torch.save({"model": {"x": _Payload(target)}, "model_args": {}}, tmp_path / "ckpt.pt")
    assert not target.exists()
    with pytest.raises(CheckpointError, match=r"ckpt\.pt was refused by the safe loader"):
        load_model(tmp_path / "ckpt.pt")
    assert not target.exists()


def test_pt_with_arbitrary_objects_is_refused(tmp_path):
    torch.save({"model": {"w": torch.zeros(2)}, "extra": torch.nn.Linear(2, 2)}, tmp_path / "weird.pt")
    with pytest.raises(CheckpointError, match=r"weird\.pt was refused by the safe loader"):
        load_model(tmp_path / "weird.pt")


def test_pt_that_is_not_a_dict_or_not_a_known_layout(tmp_path):
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"list\.pt holds a list"):
        load_model(tmp_path / "list.pt")
    torch.save({"model": {"encoder.weight": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"other\.pt holds a state dict of no known layout"):
        load_model(tmp_path / "other.pt")


def test_meta_pkl_with_a_class_or_a_payload_is_refused(tmp_path):
    torch.save(nanogpt_ckpt(hf_gpt2(activation="gelu")), tmp_path / "ckpt.pt")
    import datetime

    (tmp_path / "meta.pkl").write_bytes(pickle.dumps({"itos": {0: "a"}, "when": datetime.date(2020, 1, 1)}))
    with pytest.raises(CheckpointError, match=r"meta\.pkl is not a plain-data pickle.*datetime"):
        load_model(tmp_path / "ckpt.pt")
    target = tmp_path / "written_by_meta"
    (tmp_path / "meta.pkl").write_bytes(pickle.dumps({"itos": _Payload(target)}))
    with pytest.raises(CheckpointError, match=r"meta\.pkl"):
        load_model(tmp_path / "ckpt.pt")
    assert not target.exists()
    (tmp_path / "meta.pkl").write_bytes(pickle.dumps({"itos": {0: "ab"}}))
    with pytest.raises(CheckpointError, match=r"meta\.pkl: 'itos' must map"):
        load_model(tmp_path / "ckpt.pt")


def test_wrong_shapes_and_unknown_keys_are_refused(tmp_path):
    ckpt = nanogpt_ckpt(hf_gpt2(activation="gelu"), prefix="")
    ckpt["model"]["transformer.wpe.weight"] = torch.zeros(64, 16)
    torch.save(ckpt, tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match=r"ckpt\.pt: tensor wpe\.weight has shape \[64, 16\]"):
        load_model(tmp_path / "ckpt.pt")
    ckpt = nanogpt_ckpt(hf_gpt2(activation="gelu"), prefix="")
    ckpt["model"]["transformer.h.0.adapter.weight"] = torch.zeros(2)
    torch.save(ckpt, tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match=r"ckpt\.pt has key\(s\) this layout does not know: .*adapter"):
        load_model(tmp_path / "ckpt.pt")


def test_hf_conv1d_weight_of_wrong_rank_is_refused(tmp_path):
    hf = hf_gpt2()
    hf.config.save_pretrained(tmp_path)
    state = hf.state_dict()
    state["transformer.h.0.attn.c_attn.weight"] = torch.zeros(32 * 96)
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"c_attn\.weight has shape \[3072\]; a Conv1D weight is 2-D"):
        load_model(tmp_path)


def test_unrecognised_inputs_say_what_was_expected(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="nanoGPT ckpt.pt"):
        load_model(tmp_path / "notes.txt")


def test_own_format_gets_a_report(tmp_path):
    model = attnres_model("block", 2)
    save_model(model, tmp_path, extra_config={"training": {"steps": 12}})
    report = load_model(tmp_path).import_report
    assert report.format == "attnres-lens" and report.trained_steps == 12
    assert ("out_res.query", "out_res.query") in report.mapped
    assert report.n_params == model.num_params()
    assert "parameters:" in report.summary()
    assert report.missing == () and report.tied == ("lm_head.weight = wte.weight (stored once)",)
    assert f"keys: {len(report.mapped)} mapped, 0 ignored, 0 missing, 1 tied" in report.summary()
