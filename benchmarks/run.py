"""Speed and memory of PreNorm, Full and Block AttnRes, measured side by side.

    python -m benchmarks.run --device cuda --out benchmarks/results/h100.json
    python -m benchmarks.run --device cpu --quick --out benchmarks/results/cpu-quick.json

Per shape: forward latency of every residual rule and depth path (sequential, two_phase, the
Triton "fused" kernel on CUDA, and torch.compile of two_phase), then the training step
(forward + backward + AdamW) of each rule, then ratios against PreNorm and the targets (``targets.py``).
On CUDA the field's AttnRes kernels (attnres/field_kernels.py: fla, flash_attn_res, liger,
fast_attnres) get inference and training rows too, wherever their library is installed.
Writes the JSON of DESIGN.md §5 and the Markdown table rendered from it (same name, .md).
Needs only torch (+ triton for the fused rows): no numpy, no app dependencies.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from attnres import field_kernels, kernels
from attnres.config import ModelConfig
from attnres.device import DTYPES, autocast_for, dtype_name
from attnres.model import Model

from . import harness, render
from .cuda_graph import graphed_step
from .harness import Variant
from .kernel import kernel_timing
from .targets import evaluate_targets, probe_sweep_timing

RESULTS = Path(__file__).parent / "results"
RULES = ("prenorm", "full", "block")
BLOCK_S = 4  # attnres_block_size (sublayers per block) of the Block rows


@dataclass(frozen=True)
class Shape:
    n_layer: int  # Transformer blocks (2 * n_layer sublayers)
    d_model: int
    n_head: int
    seq: int
    batch: int
    vocab: int


SHAPES = {
    "sample": Shape(n_layer=8, d_model=96, n_head=4, seq=256, batch=8, vocab=84),  # the shipped models
    "gpt2-small": Shape(n_layer=12, d_model=768, n_head=12, seq=1024, batch=8, vocab=50304),
    "deep": Shape(n_layer=24, d_model=512, n_head=8, seq=512, batch=8, vocab=50304),  # 48 sublayers
    "tiny": Shape(n_layer=2, d_model=32, n_head=2, seq=16, batch=2, vocab=64),  # the test suite's
}
# --quick keeps widths and depths, cuts the tokens:
QUICK_BATCH_SEQ = {"sample": (4, 256), "gpt2-small": (1, 128), "deep": (1, 64)}


def build_model(shape: Shape, residual: str, device: torch.device, seed: int = 0) -> Model:
    """A fresh model of one rule; depth queries (logits of order 1) and key gains randomised, so the
    depth softmax is neither flat nor one-hot."""
    torch.manual_seed(seed)
    config = ModelConfig(
        vocab_size=shape.vocab, block_size=shape.seq, n_layer=shape.n_layer, n_head=shape.n_head,
        d_model=shape.d_model, residual=residual,
        attnres_block_size=BLOCK_S if residual == "block" else None,
    )  # fmt: skip
    model = Model(config).to(device)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("_res.query"):
                p.normal_(0.0, shape.d_model**-0.5)
            elif name.endswith("_res.norm.weight"):
                p.uniform_(0.5, 1.5)
    return model


def _label(shape_name, phase, residual, impl) -> dict:
    return {"shape": shape_name, "phase": phase, "residual": residual,
            "attnres_block_size": BLOCK_S if residual == "block" else None, "depth_impl": impl}  # fmt: skip


def inference_variants(run, shape_name, models, tokens) -> list[Variant]:
    """Forward passes under no_grad: every rule x depth path, plus compiled ones when enabled."""
    impls = ["sequential", "two_phase"] + (["fused"] if run.fused else [])
    plans = [("prenorm", "sequential")] + [(r, i) for r in ("full", "block") for i in impls]
    plans += [(r, i) for r in ("full", "block") for i in run.field_impls(shape_name, models[r].config)]
    if run.compile_for(shape_name):
        plans += [("prenorm", "sequential+compile")] + [(r, "two_phase+compile") for r in ("full", "block")]
    if run.graph:  # the whole no-grad forward replayed as one CUDA graph (cuda_graph.GraphedForward)
        plans += [("prenorm", "sequential+graph")] + [(r, "fused+graph") for r in ("full", "block")]
    variants = []
    for residual, impl in plans:
        model = models[residual]
        if impl.endswith("+graph"):
            step = graphed_step(model, tokens, impl.split("+")[0], run.dtype)
            params = harness.tensor_bytes(model.parameters())
            variants.append(Variant(_label(shape_name, "inference", residual, impl), step, params))
            continue

        def forward(model=model, depth_impl=impl.split("+")[0]):  # noqa: B008
            return model(tokens, depth_impl=depth_impl).logits

        if impl.endswith("+compile"):
            forward = torch.compile(forward, dynamic=False)

        def step(forward=forward):
            with torch.no_grad(), autocast_for(run.device, run.dtype_name):
                return forward()

        params = harness.tensor_bytes(model.parameters())
        variants.append(Variant(_label(shape_name, "inference", residual, impl), step, params))
    return variants


def train_variants(run, shape_name, shape, tokens, targets) -> list[Variant]:
    """One optimisation step per call: forward with loss, backward, AdamW, grads freed."""
    variants = []
    attnres_plans = [
        (r, i) for r in ("full", "block") for i in ("sequential", "two_phase", *field_kernels.FIELD_IMPLS)
    ]
    plans = [("prenorm", "sequential")] + attnres_plans
    for residual, impl in plans:  # both depth paths of AttnRes: evidence for the default (README)
        model = build_model(shape, residual, run.device).train()
        if impl in field_kernels.FIELD_IMPLS and impl not in run.field_impls(shape_name, model.config):
            continue
        fused_adam = {"fused": True} if run.device.type == "cuda" else {}
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, **fused_adam)

        def step(model=model, optimizer=optimizer, impl=impl):
            with autocast_for(run.device, run.dtype_name):
                loss = model(tokens, targets, depth_impl=impl).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        variant = Variant(_label(shape_name, "train", residual, impl), step)
        variant.model, variant.optimizer = model, optimizer
        variants.append(variant)
    return variants


def measure(run, variants: list[Variant]) -> list[Variant]:
    live = harness.warm_up(variants, run.device, run.warmup, run.min_sample_ms, run.errors)
    for variant in live:  # optimizer state exists once a step has run
        if hasattr(variant, "optimizer"):
            state = [t for s in variant.optimizer.state.values() for t in s.values()]
            variant.persistent_bytes = harness.tensor_bytes(list(variant.model.parameters()) + state)
    harness.time_interleaved(live, run.device, run.repeats)
    for variant in live:
        variant.peak_mem_mb = harness.peak_memory_mb(variant, run.device)
    return live


def check_paths(run, shape_name, models, tokens) -> list[dict]:
    """Max |logits - sequential logits| of each depth path, so the GPU run validates the kernel."""
    rows = []
    with torch.no_grad(), autocast_for(run.device, run.dtype_name):
        for residual in ("full", "block"):
            ref = models[residual](tokens, depth_impl="sequential").logits.float()
            field = run.field_impls(shape_name, models[residual].config)
            for impl in ["two_phase"] + (["fused"] if run.fused else []) + field + ["default"]:
                try:  # a field library that fails on this GPU is reported, not fatal
                    out = models[residual](
                        tokens, depth_impl=None if impl == "default" else impl
                    ).logits.float()
                except Exception as error:
                    run.errors.append(
                        f"{shape_name} {residual} {impl} check: {type(error).__name__}: {error}"
                    )
                    continue
                diff, scale = (out - ref).abs().max().item(), ref.abs().max().item()
                rows.append({"shape": shape_name, "residual": residual, "depth_impl": impl,
                             "max_abs_diff_vs_sequential": diff, "max_abs_logit": scale})  # fmt: skip
    return rows


def result_row(run, variant: Variant, batch: int, seq: int) -> dict:
    ms = harness.median_ms(variant)
    peak = getattr(variant, "peak_mem_mb", None)
    return {**variant.label, "dtype": run.dtype_name, "batch": batch, "seq": seq, "median_ms": round(ms, 4),
            "tokens_per_s": round(batch * seq / (ms / 1000), 1),
            "peak_mem_mb": None if peak is None else round(peak, 1), "ratio_vs_prenorm": None}  # fmt: skip


def add_ratios(rows: list[dict]) -> None:
    """ratio_vs_prenorm: median time over PreNorm's at the same shape and phase, compiled vs compiled,
    graphed vs graphed."""

    def key(row):
        return row["shape"], row["phase"], row["depth_impl"].partition("+")[2]

    base = {key(r): r["median_ms"] for r in rows if r["residual"] == "prenorm"}
    for row in rows:
        ref = base.get(key(row))
        row["ratio_vs_prenorm"] = round(row["median_ms"] / ref, 4) if ref else None


class Run:
    """The options of one benchmark run, resolved, plus the notes and errors it collects."""

    def __init__(self, args):
        self.device = torch.device(args.device)
        self.dtype_name = dtype_name(self.device, args.dtype or "bf16")
        self.dtype = DTYPES[self.dtype_name]
        self.quick, self.shapes, self.train = args.quick, args.shapes, not args.no_train
        self.repeats = args.repeats or (3 if args.quick else 15)
        self.warmup = args.warmup or (1 if args.quick else 3)
        self.min_sample_ms = 20.0 if self.device.type == "cuda" else 0.0
        self.fused = self.device.type == "cuda" and kernels.fused_available()
        self.compile = self.device.type == "cuda" and not args.no_compile
        self.graph = self.fused and not args.no_graph
        self.no_probe = args.no_probe
        self.compile_shapes, self.budget_s = args.compile_shapes, args.budget_s
        self.started = datetime.datetime.now()
        self.notes, self.errors, self.checks = [], [], []
        if self.device.type == "cuda" and not self.fused:
            self.notes.append("fused rows skipped: triton cannot be imported here")
        self.field, self.field_shapes = self.device.type == "cuda" and not args.no_field, args.field_shapes
        if self.device.type != "cuda":
            self.notes.append(f"field-kernel rows ({', '.join(field_kernels.FIELD_IMPLS)}): CUDA only")
        if args.dtype and args.dtype != self.dtype_name:
            self.notes.append(f"--dtype {args.dtype} ignored on CPU: CPU runs are fp32")

    def field_impls(self, shape_name: str, config) -> list[str]:
        """The field kernels that can run a model of this config here; a note for each that cannot."""
        if not self.field or shape_name not in self.field_shapes:  # first calls autotune and compile
            return []
        usable = []
        for impl in field_kernels.FIELD_IMPLS:
            reason = field_kernels.refusal(config, impl, self.device)
            if reason is None:
                usable.append(impl)
            elif reason not in self.notes:
                self.notes.append(reason)
        return usable

    def elapsed_s(self) -> float:
        return (datetime.datetime.now() - self.started).total_seconds()

    def train_for(self, shape_name: str) -> bool:
        """Training rows at every shape, except the big ones on a quick CPU run (minutes each there)."""
        if self.quick and self.device.type == "cpu" and shape_name in ("gpt2-small", "deep"):
            self.notes.append(f"{shape_name}: no training rows (quick CPU run)")
            return False
        return self.train

    def compile_for(self, shape_name: str) -> bool:
        if not self.compile or shape_name not in self.compile_shapes:
            return False
        if self.budget_s and self.elapsed_s() > 0.4 * self.budget_s:  # compiling a deep model takes minutes
            self.notes.append(f"{shape_name}: no compiled rows, past 40% of --budget-s {self.budget_s:g}")
            return False
        return True


def run_shape(run: Run, shape_name: str, probe: dict | None) -> list[dict]:
    shape = SHAPES[shape_name]
    batch, seq = shape.batch, shape.seq
    if run.quick:
        batch, seq = QUICK_BATCH_SEQ.get(shape_name, (batch, seq))
    shape = Shape(shape.n_layer, shape.d_model, shape.n_head, seq, batch, shape.vocab)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, shape.vocab, (batch, seq + 1), generator=gen).to(run.device)
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    models = {r: build_model(shape, r, run.device).eval() for r in RULES}
    run.checks += check_paths(run, shape_name, models, inputs)
    variants = measure(run, inference_variants(run, shape_name, models, inputs))
    rows = [result_row(run, v, batch, seq) for v in variants]
    if probe is not None and "status" not in probe:
        probe.update(probe_sweep_timing(models, run.device, max(1, run.repeats // 3), warm_up=not run.quick))
        probe["shape"] = shape_name
    del models, variants  # free the inference models before the training ones are built
    torch._dynamo.reset()
    if run.train_for(shape_name):
        variants = measure(run, train_variants(run, shape_name, shape, inputs, targets))
        rows += [result_row(run, v, batch, seq) for v in variants]
        del variants
    if run.device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.machine()} ({torch.get_num_threads()} threads)"


def benchmark(run: Run) -> dict:
    for name in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit"):
        if hasattr(torch._dynamo.config, name):  # one compiled function per model: allow many
            setattr(torch._dynamo.config, name, 256)
    rows, probe = [], (None if run.no_probe else {})
    for shape_name in run.shapes:
        rows += run_shape(run, shape_name, probe)
        print(f"[benchmarks] {shape_name} done at {run.elapsed_s():.0f} s", file=sys.stderr, flush=True)
    add_ratios(rows)
    kernel_rows = kernel_timing(run.device, run.warmup, run.repeats, run.errors) if run.fused else None
    if hasattr(os, "getloadavg"):
        run.notes.append(
            f"load average at the end (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
    try:
        import triton

        triton_version = triton.__version__
    except Exception:
        triton_version = None
    return {"device": device_name(run.device), "torch": torch.__version__, "triton": triton_version,
            "python": platform.python_version(), "date": run.started.astimezone().isoformat("T", "seconds"),
            "dtype": run.dtype_name, "quick": run.quick, "results": rows, "kernel": kernel_rows,
            "targets": evaluate_targets(rows, run.quick), "probe_sweep": probe or None, "checks": run.checks,
            "notes": run.notes, "errors": run.errors, "wall_s": round(run.elapsed_s(), 1)}  # fmt: skip


def parse_args(argv=None):
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if cuda else "cpu")
    p.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/<device>[-quick].json)")
    p.add_argument("--quick", action="store_true", help="fewer repeats, fewer tokens at the big shapes")
    p.add_argument("--dtype", choices=list(DTYPES), help="autocast dtype on CUDA (default bf16)")
    p.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=["sample", "gpt2-small", "deep"])
    p.add_argument("--repeats", type=int, default=0, help="timed samples per variant (default 15, quick 3)")
    p.add_argument("--warmup", type=int, default=0, help="untimed calls per variant (default 3, quick 1)")
    p.add_argument("--no-train", action="store_true", help="skip the training-step rows")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    p.add_argument("--no-graph", action="store_true", help="skip the CUDA-graph rows")
    p.add_argument("--no-probe", action="store_true", help="skip the probe-sweep timing")
    p.add_argument("--no-field", action="store_true", help="skip the field-kernel rows (fla, liger, ...)")
    p.add_argument("--field-shapes", nargs="*", default=["sample", "deep"], choices=list(SHAPES),
                   help="shapes with field-kernel rows (each library autotunes at first use)")  # fmt: skip
    p.add_argument("--compile-shapes", nargs="*", default=["gpt2-small", "deep"], choices=list(SHAPES))
    p.add_argument("--budget-s", type=float, default=0.0, help="skip compiling once 40%% of this is spent")
    args = p.parse_args(argv)
    if args.device == "cuda" and not cuda:
        p.error("--device cuda but torch sees no CUDA device")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = args.out or RESULTS / f"{args.device}{'-quick' if args.quick else ''}.json"
    result = benchmark(Run(args))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(render.render(result))
    print(f"[benchmarks] wrote {out} and {out.with_suffix('.md')}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
