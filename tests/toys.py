"""Tiny models and a thread setting shared by the test packages (conftest files cannot be imported
under pytest's importlib mode; this module can, with the repository root on ``pythonpath``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from attnres import CharTokenizer, Model, ModelConfig


def tiny_model(
    residual: str,
    block: int | None,
    *,
    vocab: str,
    n_layer: int,
    d_model: int,
    block_size: int,
    seed: int = 0,
    query_std: float | None = None,
    **fields,
) -> Model:
    """A seeded random model in eval mode, 2 heads; with query_std the zero-initialised depth
    queries are redrawn from N(0, query_std) right after the weights (same global RNG stream)."""
    torch.manual_seed(seed)
    config = ModelConfig(
        vocab_size=len(vocab),
        block_size=block_size,
        n_layer=n_layer,
        n_head=2,
        d_model=d_model,
        residual=residual,
        attnres_block_size=block,
        **fields,
    )
    model = Model(config, CharTokenizer(vocab)).eval()
    if query_std is not None:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("res.query"):
                    p.normal_(0.0, query_std)
    return model


@contextmanager
def threads(n: int) -> Iterator[None]:
    """torch runs on n threads inside, and on as many as before afterwards (tiny tensors run fastest
    on one thread and do not fight a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def ours_as_nanogpt(model: Model) -> dict:
    """One of our PreNorm models under nanoGPT's names (the inverse of the mapping table)."""
    names = {"wte.": "transformer.wte.", "wpe.": "transformer.wpe.", "final_norm.": "transformer.ln_f."}
    state = {}
    for name, tensor in model.state_dict().items():
        foreign = (
            name.replace("blocks.", "transformer.h.").replace("attn_norm", "ln_1").replace("mlp_norm", "ln_2")
        )
        for a, b in names.items():
            foreign = b + foreign[len(a) :] if foreign.startswith(a) else foreign
        state[foreign] = tensor.clone()
    return state


def ours_as_repro(model: Model) -> dict:
    """Our AttnRes model in tokenbender/nanogpt-attnres-repro's layout (ckpt.pt dict)."""
    cfg, L = model.config, model.config.n_sublayers
    state = {k: v for k, v in ours_as_nanogpt(model).items() if "_res." not in k}
    state["lm_head.weight"] = state["transformer.wte.weight"]
    for i in range(cfg.n_layer):  # AttnResBlock registers ln_1 / attn twice (attn_branch)
        for k in [k for k in state if k.startswith(f"transformer.h.{i}.ln_1.")]:
            state[k.replace(".ln_1.", ".attn_branch.norm.")] = state[k]
        for k in [k for k in state if k.startswith(f"transformer.h.{i}.attn.")]:
            state[k.replace(".attn.", ".attn_branch.attn.")] = state[k]
    sites = [model.site(l) for l in range(1, L + 2)]
    state["attnres_mixer.mixer.queries"] = torch.stack([s.query.detach() for s in sites])  # [2L+1, d]
    for k, site in enumerate(sites):
        state[f"attnres_mixer.mixer.key_norms.{k}.weight"] = site.norm.weight.detach().clone()
    config = dict(
        block_size=cfg.block_size,
        vocab_size=cfg.vocab_size,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        n_embd=cfg.d_model,
        dropout=0.0,
        bias=True,
        hc_disable=True,
        mhc=False,
        v_residual=False,
        attnres_variant=cfg.residual,
        attnres_block_size=cfg.attnres_block_size or 1,
        attnres_eps=1e-8,
    )
    return {"model": {"_orig_mod." + k: v for k, v in state.items()}, "config": config, "iter_num": 800}


IMPORT_VOCAB = "\n !',-.:;?ABTW" + "abcdefghijklmnopqrstuvwxyz"  # what the app tests' prompts use


def tokenizerless_repro_run(root, residual: str = "block", seed: int = 0):
    """A tokenbender/nanogpt-attnres-repro run as that project saves it, ``<root>/out-repro-<residual>/
    ckpt.pt`` with no tokenizer anywhere near it, and the char vocabulary it was trained on as a nanoGPT
    ``meta.pkl`` in ``<root>/vocab/`` (where no importer looks). Returns (ckpt, meta.pkl, the model)."""
    import pickle  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    root = Path(root)
    torch.manual_seed(seed)
    config = ModelConfig(
        vocab_size=len(IMPORT_VOCAB), block_size=64, n_layer=2, n_head=2, d_model=16, residual=residual,
        attnres_block_size=2 if residual == "block" else None, norm="layernorm", norm_eps=1e-5, bias=True,
        activation="gelu", depth_norm_eps=1e-8,
    )  # fmt: skip
    model = Model(config).eval()
    with torch.no_grad():  # trained-looking depth attention: non-zero queries
        for name, p in model.named_parameters():
            if name.endswith(".query"):
                p.copy_(torch.randn_like(p))
    run = root / f"out-repro-{residual}"
    run.mkdir(parents=True)
    torch.save(ours_as_repro(model), run / "ckpt.pt")
    (root / "vocab").mkdir(exist_ok=True)
    itos = dict(enumerate(IMPORT_VOCAB))
    meta = {"vocab_size": len(itos), "itos": itos, "stoi": {c: i for i, c in itos.items()}}
    (root / "vocab" / "meta.pkl").write_bytes(pickle.dumps(meta))
    return run / "ckpt.pt", root / "vocab" / "meta.pkl", model


def byte_level_bpe(text: str, vocab_size: int = 300):
    """A GPT-2-style byte-level BPE ``tokenizers.Tokenizer`` trained offline on ``text``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: PLC0415

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False, initial_alphabet=alphabet)
    tokenizer.train_from_iterator([text], trainer)
    return tokenizer


def tiny_hf_llama(directory, text: str = "To be, or not to be, that is the question", seed: int = 0):
    """A Hugging Face Llama directory as ``save_pretrained`` writes it (random tiny weights, grouped-query
    attention, separate head) with a ``tokenizer.json`` trained on ``text``. Returns (the transformers
    model, the tokenizer)."""
    from transformers import LlamaConfig, LlamaForCausalLM  # noqa: PLC0415 (slow to import)

    tokenizer = byte_level_bpe(text)
    config = LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(directory)
    tokenizer.save(str(directory / "tokenizer.json"))
    return model, tokenizer
