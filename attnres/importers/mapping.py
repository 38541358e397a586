"""Foreign parameter names -> ours: one regex table per layout, applied by ``apply_rules``.

Our names (DESIGN.md §2): ``wte.weight``, ``wpe.weight``, ``blocks.{i}.{attn_norm,mlp_norm}.*``,
``blocks.{i}.attn.{c_attn,c_proj}.*``, ``blocks.{i}.mlp.{c_fc,c_proj}.*``, ``final_norm.*``,
``lm_head.weight``, and the depth sites ``blocks.{i}.{attn_res,mlp_res}.{query,norm.weight}``,
``out_res.{query,norm.weight}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoint import CheckpointError


@dataclass(frozen=True)
class Rule:
    """One row of a mapping table.

    pattern: regex that must match the whole foreign key.
    target: our key, as a ``re.Match.expand`` template or a function (match, n_layer) -> key.
    transpose: the foreign tensor is [in, out] (HF Conv1D) and ours is [out, in].
    """

    pattern: str
    target: str | Callable[[re.Match, int], str]
    transpose: bool = False

    def key(self, match: re.Match, n_layer: int) -> str:
        """Our key for a foreign key this rule matched."""
        return self.target(match, n_layer) if callable(self.target) else match.expand(self.target)


def gpt2_rules(conv1d: bool) -> tuple[Rule, ...]:
    """GPT-2 names (nanoGPT and HF share them); HF stores c_attn/c_proj/c_fc weights as [in, out]."""
    return (
        Rule(r"transformer\.wte\.weight", "wte.weight"),
        Rule(r"transformer\.wpe\.weight", "wpe.weight"),
        Rule(r"transformer\.h\.(\d+)\.ln_1\.(weight|bias)", r"blocks.\1.attn_norm.\2"),
        Rule(r"transformer\.h\.(\d+)\.attn\.(c_attn|c_proj)\.weight", r"blocks.\1.attn.\2.weight", conv1d),
        Rule(r"transformer\.h\.(\d+)\.attn\.(c_attn|c_proj)\.bias", r"blocks.\1.attn.\2.bias"),
        Rule(r"transformer\.h\.(\d+)\.ln_2\.(weight|bias)", r"blocks.\1.mlp_norm.\2"),
        Rule(r"transformer\.h\.(\d+)\.mlp\.(c_fc|c_proj)\.weight", r"blocks.\1.mlp.\2.weight", conv1d),
        Rule(r"transformer\.h\.(\d+)\.mlp\.(c_fc|c_proj)\.bias", r"blocks.\1.mlp.\2.bias"),
        Rule(r"transformer\.ln_f\.(weight|bias)", r"final_norm.\1"),
        Rule(r"lm_head\.weight", "lm_head.weight"),
    )


# Keys that carry no weights: the causal-mask buffers of old nanoGPT / HF GPT-2 attention.
GPT2_IGNORED = (
    (r"transformer\.h\.\d+\.attn\.(bias|masked_bias)", "causal-mask buffer; attention rebuilds it"),
)


def site_key(index: int, n_layer: int) -> str:
    """Our module of depth site ``index + 1`` (0-based peer index; index 2*n_layer is the readout)."""
    if index == 2 * n_layer:
        return "out_res"
    return f"blocks.{index // 2}." + ("attn_res" if index % 2 == 0 else "mlp_res")


def apply_rules(
    tensors: dict[str, torch.Tensor],
    rules: tuple[Rule, ...],
    ignored_rules: tuple[tuple[str, str], ...],
    source: Path,
    n_layer: int,
) -> tuple[dict[str, torch.Tensor], list[tuple[str, str]], list[str]]:
    """Renames a foreign state dict; returns (ours, mapped pairs, ignored keys with reasons).

    Two foreign keys may name one of our tensors (a module shared under two names, a tied head);
    they must then hold the same values, and the key of the earlier table row is the one mapped.
    Any key no rule knows raises CheckpointError.
    """
    ours, mapped, ignored, unknown = {}, [], [], []
    for name in sorted(tensors, key=lambda n: (_rule_index(rules, n), n)):  # earlier rows win
        reason = next((why for pattern, why in ignored_rules if re.fullmatch(pattern, name)), None)
        rule, match = next(((r, m) for r in rules if (m := re.fullmatch(r.pattern, name))), (None, None))
        if reason is not None:
            ignored.append(f"{name} ({reason})")
        elif rule is None:
            unknown.append(name)
        else:
            target = rule.key(match, n_layer)
            if _store(ours, target, _converted(rule, tensors[name], name, source), name, source):
                mapped.append((name, target))
            else:
                ignored.append(f"{name} (same tensor as the key mapped to {target})")
    if unknown:
        shown = ", ".join(unknown[:3]) + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
        raise CheckpointError(f"{source} has key(s) this layout does not know: {shown}; nothing was guessed.")
    return ours, mapped, ignored


def _converted(rule: Rule, value, name: str, source: Path) -> torch.Tensor:
    """The foreign value as our tensor: checked, and transposed when the rule says so."""
    tensor = _tensor(value, name, source)
    return _transposed(tensor, name, source) if rule.transpose else tensor


def _store(ours: dict, target: str, tensor: torch.Tensor, name: str, source: Path) -> bool:
    """Puts tensor under target; False when an earlier key already put the same values there."""
    if target not in ours:
        ours[target] = tensor
        return True
    if ours[target].shape != tensor.shape or not torch.equal(ours[target], tensor):
        raise CheckpointError(f"{source}: {name} and another key both map to {target} but differ.")
    return False


def _rule_index(rules: tuple[Rule, ...], name: str) -> int:
    return next((i for i, rule in enumerate(rules) if re.fullmatch(rule.pattern, name)), len(rules))


def _tensor(value, name: str, source: Path) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"{source}: {name} is a {type(value).__name__}, not a tensor.")
    return value


def _transposed(tensor: torch.Tensor, name: str, source: Path) -> torch.Tensor:
    if tensor.ndim != 2:
        raise CheckpointError(
            f"{source}: {name} has shape {list(tensor.shape)}; a Conv1D weight is 2-D [in, out]."
        )
    return tensor.t().contiguous()


def strip_prefixes(state: dict, prefixes=("_orig_mod.", "module.")) -> dict:
    """Removes torch.compile / DDP wrapper prefixes (repeatedly: module._orig_mod.x -> x)."""
    out = {}
    for name, value in state.items():
        stripped = True
        while stripped and isinstance(name, str):
            stripped = False
            for prefix in prefixes:
                if name.startswith(prefix):
                    name, stripped = name[len(prefix) :], True
        out[name] = value
    return out


def query_vectors(state: dict, pattern: re.Pattern, d: int, source: Path) -> dict:
    """Depth queries stored as ``nn.Linear(d, 1)`` weights [1, d] become vectors [d].

    Each key matching ``pattern`` is renamed ``name[0]``, the name the peers' rule tables map.
    """
    out = {}
    for name, value in state.items():
        if pattern.fullmatch(name):
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != (1, d):
                shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise CheckpointError(
                    f"{source}: {name} has shape {shape}; expected [1, {d}] (nn.Linear(d, 1))."
                )
            name, value = name + "[0]", value[0].clone()
        out[name] = value
    return out
