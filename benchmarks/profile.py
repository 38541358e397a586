"""Where the time of an AttnRes forward (and training step) goes, next to PreNorm's.

    python -m benchmarks.profile --out-dir $OUT            # CUDA: gpt2-small, bf16 autocast
    python -m benchmarks.profile --device cpu --shape tiny  # a smoke run anywhere

For each variant (PreNorm; Block fused / sequential / two_phase / fused+graph; Full fused; the
training steps) it times the step (median of synchronised calls), then profiles one call with
torch.profiler (CPU + CUDA activities) and reports: top ops by self device time and by CPU time,
device kernels launched, GPU busy time (union of kernel intervals) against the wall time (a step
whose GPU is idle most of the wall is launch/Python-bound), device time per kernel family and its
difference from PreNorm (where each ms of overhead goes), the dtypes that reach every norm (the
"Mismatch dtype between input and weight" RMSNorm fallback) and the warnings raised.
Writes profile-<device>.json and .md into --out-dir.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import statistics
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from attnres import kernels
from attnres.device import DTYPES, autocast_for

from .cuda_graph import graphed_step
from .profile_report import overhead, render
from .run import SHAPES, build_model

# kernel families, first match wins (names of cuBLAS/CUTLASS/flash/triton/ATen kernels)
FAMILIES = [
    ("depth-attention (triton)", r"depth_attend"),
    ("sdpa / flash", r"flash|fmha|attention|sdpa"),
    ("gemm", r"gemm|cutlass|sm\d\d_xmma|nvjet|cublas|s\d+gemm|wgmma"),
    ("norm", r"rms|layer_norm|norm"),
    ("softmax", r"softmax"),
    ("stack / cat", r"CatArray|cat_|stack"),
    ("reduce", r"reduce"),
    ("copy / cast", r"copy|cast|direct_copy|to_copy|Memcpy|Memset"),
    ("elementwise", r"elementwise|vectorized|unrolled|distribution|fill"),
    ("embedding / index", r"index|embedding|gather|scatter"),
    ("optimizer", r"adam|multi_tensor|foreach"),
]


def family(name: str) -> str:
    for label, pattern in FAMILIES:
        if re.search(pattern, name, re.IGNORECASE):
            return label
    return "other"


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _self_device_us(event) -> float:
    for name in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(event, name):
            return float(getattr(event, name))
    return 0.0


def _device_events(prof):
    """Kernels / memcpys / memsets that ran on the device: (name, start_us, end_us)."""
    out = []
    for e in prof.events():
        if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA:
            out.append((e.name, e.time_range.start, e.time_range.end))
    return out


def _busy_us(intervals) -> float:
    busy, end = 0.0, float("-inf")
    for start, stop in sorted((s, e) for _, s, e in intervals):
        if stop <= end:
            continue
        busy += stop - max(start, end)
        end = stop
    return busy


def norm_dtypes(model: nn.Module, step) -> dict:
    """Input / weight dtypes reaching every norm in one call (e.g. bf16 input, fp32 weight)."""
    seen: Counter = Counter()

    def hook(module, args):
        weight = getattr(module, "weight", None)
        w = str(weight.dtype).replace("torch.", "") if weight is not None else "none"
        seen[f"{type(module).__name__}: input {str(args[0].dtype).replace('torch.', '')}, weight {w}"] += 1

    handles = [
        m.register_forward_pre_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.RMSNorm, nn.LayerNorm))
    ]
    try:
        step()
    finally:
        for h in handles:
            h.remove()
    return dict(seen)


def profile_variant(name: str, step, model, device, repeats: int, top: int) -> dict:
    """Times step, then profiles one call of it."""
    row: dict = {"variant": name}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            step()
    row["warnings"] = sorted({f"{w.category.__name__}: {str(w.message)[:200]}" for w in caught})
    row["norm_dtypes"] = norm_dtypes(model, step)
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1000)
    row["median_ms"] = round(statistics.median(times), 3)
    # wall time of back-to-back calls (GPU queue kept full): the steady-state cost
    n = 5
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    _sync(device)
    row["pipelined_ms"] = round((time.perf_counter() - t0) * 1000 / n, 3)
    # host-side cost alone: time to enqueue one call (CPU wall until the Python call returns), median of 5
    host = []
    for _ in range(5):
        _sync(device)
        t0 = time.perf_counter()
        step()
        host.append((time.perf_counter() - t0) * 1000)
    row["host_ms"] = round(statistics.median(host), 3)
    _sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    _sync(device)
    with profile(activities=activities) as prof:
        step()
        _sync(device)
    dev = _device_events(prof)
    row["device_events"] = len(dev)
    row["gpu_busy_ms"] = round(_busy_us(dev) / 1000, 3)
    row["gpu_kernel_sum_ms"] = round(sum(e - s for _, s, e in dev) / 1000, 3)
    row["gpu_busy_fraction_of_median"] = round(row["gpu_busy_ms"] / row["median_ms"], 3) if dev else None
    fam: Counter = Counter()
    fam_n: Counter = Counter()
    for kname, s, e in dev:
        fam[family(kname)] += (e - s) / 1000
        fam_n[family(kname)] += 1
    row["device_ms_by_family"] = {k: round(v, 3) for k, v in fam.most_common()}
    row["kernels_by_family"] = dict(fam_n.most_common())
    averages = prof.key_averages()
    launches = [
        a
        for a in averages
        if a.key
        in (
            "cudaLaunchKernel",
            "cuLaunchKernel",
            "cudaLaunchKernelExC",
            "cuLaunchKernelEx",
            "cudaMemcpyAsync",
            "cudaMemsetAsync",
        )
    ]
    row["launch_calls"] = sum(a.count for a in launches)
    row["launch_cpu_ms"] = round(sum(a.self_cpu_time_total for a in launches) / 1000, 3)
    syncs = [
        a for a in averages if "Synchronize" in a.key or a.key in ("aten::item", "aten::_local_scalar_dense")
    ]
    row["host_syncs"] = {a.key: a.count for a in syncs}

    def entry(a):
        return {
            "op": a.key[:90],
            "count": a.count,
            "self_device_ms": round(_self_device_us(a) / 1000, 3),
            "self_cpu_ms": round(a.self_cpu_time_total / 1000, 3),
            "cpu_total_ms": round(a.cpu_time_total / 1000, 3),
        }

    by_dev = sorted(averages, key=_self_device_us, reverse=True)[:top]
    by_cpu = sorted(
        (
            a
            for a in averages
            if a.key.startswith("aten::")
            or "triton" in a.key.lower()
            or a.key.startswith("cuda")
            or a.key.startswith("cu")
        ),
        key=lambda a: a.self_cpu_time_total,
        reverse=True,
    )[:top]
    row["top_by_self_device"] = [entry(a) for a in by_dev if _self_device_us(a) > 0]
    row["top_by_self_cpu"] = [entry(a) for a in by_cpu]
    return row


def variants(args, device, shape_name):
    """(name, step, model) triples; models are built lazily, one rule at a time."""
    shape = SHAPES[shape_name]
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, shape.vocab, (shape.batch, shape.seq + 1), generator=gen).to(device)
    inputs = tokens[:, :-1].contiguous()
    dtype = DTYPES[args.dtype]
    fused = device.type == "cuda" and kernels.fused_available()
    plans = [("prenorm", "sequential"), ("block", "sequential"), ("block", "two_phase")]
    plans += [("block", "fused"), ("full", "fused")] if fused else []
    plans += [("prenorm", "sequential+graph"), ("block", "fused+graph")] if fused and args.graph else []
    for residual in ("prenorm", "block", "full"):
        mine = [impl for r, impl in plans if r == residual]
        if not mine:
            continue
        model = build_model(shape, residual, device).eval()
        for impl in mine:
            depth_impl = impl.split("+")[0]
            if impl.endswith("+graph"):
                step = graphed_step(model, inputs, depth_impl, dtype)
            else:

                def step(model=model, depth_impl=depth_impl):
                    with torch.no_grad(), autocast_for(device, args.dtype):
                        return model(inputs, depth_impl=depth_impl).logits

            yield f"forward {residual} {impl}", step, model
        del model


def train_variants(args, device, shape_name):
    """(name, step, model) triples of one optimisation step each (fwd + bwd + AdamW)."""
    shape = SHAPES[shape_name]
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, shape.vocab, (shape.batch, shape.seq + 1), generator=gen).to(device)
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    cuda = device.type == "cuda"
    for residual, impl in [("prenorm", "sequential"), ("block", "sequential"), ("block", "two_phase")]:
        model = build_model(shape, residual, device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, **({"fused": True} if cuda else {}))

        def step(model=model, optimizer=optimizer, impl=impl):
            with autocast_for(device, args.dtype):
                loss = model(inputs, targets, depth_impl=impl).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        yield f"train {residual} {impl}", step, model
        del model, optimizer


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.split("\n")[0])
    p.add_argument(
        "--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    p.add_argument("--shape", choices=list(SHAPES), default="gpt2-small")
    p.add_argument("--dtype", choices=list(DTYPES), default="bf16")
    p.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--name", default=None, help="file stem (default profile-<device>)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--no-train", dest="train", action="store_false")
    p.add_argument("--no-graph", dest="graph", action="store_false")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        args.dtype = "fp32"
    started = time.perf_counter()
    rows = []
    it = itertools.chain(
        variants(args, device, args.shape), train_variants(args, device, args.shape) if args.train else ()
    )
    while True:
        try:
            name, step, model = next(it)
        except StopIteration:
            break
        except Exception as exc:  # a model that cannot be built / captured: note it, go on
            rows.append({"variant": "?", "error": f"{type(exc).__name__}: {exc}"[:400]})
            print(f"[profile] setup failed: {exc}", file=sys.stderr, flush=True)
            continue
        try:
            rows.append(profile_variant(name, step, model, device, args.repeats, args.top))
            print(
                f"[profile] {name}: {rows[-1]['median_ms']:.2f} ms, "
                f"GPU busy {rows[-1]['gpu_busy_ms']:.2f} ms, {rows[-1]['device_events']} kernels",
                file=sys.stderr,
                flush=True,
            )
        except Exception as exc:
            rows.append({"variant": name, "error": f"{type(exc).__name__}: {exc}"[:400]})
            print(f"[profile] {name} failed: {exc}", file=sys.stderr, flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    ok = [r for r in rows if "error" not in r]
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "torch": torch.__version__,
        "shape": args.shape,
        "dtype": args.dtype,
        "variants": rows,
        "overhead": overhead(ok),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    stem = args.name or f"profile-{args.device}"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out_dir / f"{stem}.md").write_text(render(result))
    print(f"[profile] wrote {args.out_dir / stem}.json and .md in {result['wall_s']} s", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
