"""What an import did, for the person who loaded the checkpoint (``model.import_report``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ImportReport:
    """The outcome of loading one checkpoint, attached to the model as ``model.import_report``.

    Attributes:
        format: detected format: "attnres-lens", "nanogpt", "hf-gpt2", "hf-llama", "hf-qwen2",
            "hf-qwen3", "hf-mistral", "fla-transformer" or "nanogpt-attnres-repro".
        source: the file or directory that was read.
        architecture: one line describing the model as we run it.
        n_params: parameters, a tied head counted once.
        mapped: (foreign key, our key) pairs; identical pairs for our own format.
        ignored: foreign keys that were not used, each with the reason in parentheses.
        missing: our parameters the file does not hold, each with the convention that filled it.
        tied: our parameters that share another one's tensor (a tied head), with where it came from.
        conventions: the peer's depth-attention conventions as read from its config (name -> value).
        trained_steps: optimisation steps the checkpoint says it had (None when it does not say).
        notes: anything else a person should know (e.g. a tokenizer that was not found).
    """

    format: str
    source: str
    architecture: str
    n_params: int
    mapped: tuple[tuple[str, str], ...] = ()
    ignored: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    tied: tuple[str, ...] = ()
    conventions: tuple[tuple[str, str], ...] = ()
    trained_steps: int | None = None
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self):
        if self.n_params < 0:
            raise ValueError("n_params must be >= 0")
        if any(len(pair) != 2 for pair in self.mapped):
            raise ValueError("mapped holds (foreign key, our key) pairs")

    def key_counts(self) -> str:
        """The key counts as one phrase: "N mapped, N ignored, N missing, N tied"."""
        counts = (len(self.mapped), len(self.ignored), len(self.missing), len(self.tied))
        return ", ".join(
            f"{n} {what}" for n, what in zip(counts, ("mapped", "ignored", "missing", "tied"), strict=True)
        )

    def summary(self) -> str:
        """A few lines of plain text (what the app and the CLI show)."""
        lines = [
            f"format: {self.format}  ({self.source})",
            f"architecture: {self.architecture}",
            f"parameters: {self.n_params:,}",
            f"keys: {self.key_counts()}",
        ]
        if self.trained_steps is not None:
            lines.append(f"trained steps (as the checkpoint says): {self.trained_steps}")
        lines += [f"ignored: {name}" for name in self.ignored]
        lines += [f"missing: {name}" for name in self.missing]
        lines += [f"tied: {name}" for name in self.tied]
        lines += [f"convention: {name} = {value}" for name, value in self.conventions]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def describe(model) -> str:
    """One line: the architecture of a built Model."""
    cfg = model.config
    residual = cfg.residual + (f" (S={cfg.attnres_block_size} sublayers)" if cfg.residual == "block" else "")
    norm = {"layernorm": "LayerNorm", "rmsnorm": "RMSNorm"}[cfg.norm] + (" + bias" if cfg.bias else "")
    head = "tied head" if cfg.tie_embeddings else "separate head"
    return (
        f"{_block(cfg)}, {cfg.n_layer} blocks (L={cfg.n_sublayers} sublayers), d_model={cfg.d_model}, "
        f"{_heads(cfg)}, {_mlp(cfg)}, {norm} eps={cfg.norm_eps:g}, "
        f"vocab {cfg.vocab_size}, context {cfg.block_size}, {head}; residual {residual}"
    )


def _block(cfg) -> str:
    if cfg.position == "learned":
        return "GPT"
    scaling = f", linear scaling x{cfg.rope_linear_factor:g}" if cfg.rope_linear_factor != 1 else ""
    learned = " + learned positions" if cfg.learned_positions else ""
    return f"Llama-style (RoPE theta={cfg.rope_theta:g}{scaling}{learned})"


def _heads(cfg) -> str:
    text = f"{cfg.n_head} heads"
    if cfg.kv_heads != cfg.n_head:
        text += f" ({cfg.kv_heads} key/value heads)"
    if cfg.head_dim is not None and cfg.head_dim * cfg.n_head != cfg.d_model:
        text += f" of width {cfg.d_head}"
    biases = [name for name, on in (("q/k/v", cfg.qkv_has_bias), ("output", cfg.out_has_bias)) if on]
    if biases and not cfg.bias:
        text += f", {' and '.join(biases)} bias"
    return text + (f", q/k RMSNorm eps={cfg.q_k_norm_eps:g}" if cfg.qk_norm else "")


def _mlp(cfg) -> str:
    if cfg.mlp == "gated":
        return (
            "SwiGLU MLP " + str(cfg.hidden)
            if cfg.activation == "silu"
            else f"gated MLP {cfg.hidden} ({cfg.activation})"
        )
    return f"MLP {cfg.hidden} ({cfg.activation})"


def own_format_report(model, directory, names, raw: dict) -> ImportReport:
    """The report of a checkpoint in our own format: every key maps to itself.

    Args:
        model: the built model.
        directory: the checkpoint directory.
        names: the tensor names its weights file holds (as ``load_ours`` read them).
        raw: its config.json as read.
    """
    tied = ("lm_head.weight = wte.weight (stored once)",) if model.config.tie_embeddings else ()
    return ImportReport(
        format="attnres-lens",
        source=str(directory),
        architecture=describe(model),
        n_params=model.num_params(),
        mapped=tuple((n, n) for n in sorted(names)),
        tied=tied,
        conventions=(
            ("block-size unit", "sublayers"),
            ("key norm", f"RMSNorm with gain, eps={model.config.key_norm_eps:g}"),
        ),
        trained_steps=_steps(raw),
    )


def _steps(raw: dict) -> int | None:
    """Training steps recorded in config.json (``training.steps`` / ``training.step``), if any."""
    training = raw.get("training")
    if not isinstance(training, dict):
        return None
    steps = training.get("steps", training.get("step"))
    return steps if isinstance(steps, int) and not isinstance(steps, bool) else None
