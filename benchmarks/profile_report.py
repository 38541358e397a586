"""The profile's tables: each variant's overhead over PreNorm split into GPU work and GPU idle,
one sentence per variant, and the Markdown rendering of a profile result (benchmarks/profile.py)."""

from __future__ import annotations


def overhead(rows: list[dict]) -> list[dict]:
    """Each variant minus PreNorm of the same phase (graphed minus graphed): wall, GPU busy, idle,
    per kernel family."""

    def key(row):  # "forward block fused+graph" -> ("forward", "graph")
        phase, _, impl = row["variant"].split()
        return phase, impl.partition("+")[2]

    base = {key(r): r for r in rows if r["variant"].split()[1] == "prenorm"}
    out = []
    for r in rows:
        ref = base.get(key(r))
        if ref is None or r is ref:
            continue
        fams = set(r["device_ms_by_family"]) | set(ref["device_ms_by_family"])
        diff = {
            f: round(r["device_ms_by_family"].get(f, 0) - ref["device_ms_by_family"].get(f, 0), 3)
            for f in fams
        }
        out.append(
            {
                "variant": r["variant"],
                "extra_median_ms": round(r["median_ms"] - ref["median_ms"], 3),
                "ratio": round(r["median_ms"] / ref["median_ms"], 3),
                "extra_gpu_busy_ms": round(r["gpu_busy_ms"] - ref["gpu_busy_ms"], 3),
                "extra_gpu_idle_ms": round(
                    (r["median_ms"] - r["gpu_busy_ms"]) - (ref["median_ms"] - ref["gpu_busy_ms"]), 3
                ),
                "extra_host_ms": round(r["host_ms"] - ref["host_ms"], 3),
                "extra_device_events": r["device_events"] - ref["device_events"],
                "extra_device_ms_by_family": dict(sorted(diff.items(), key=lambda kv: -abs(kv[1]))),
            }
        )
    return out


def explain(o: dict) -> str:
    """One sentence: the extra wall time split into extra GPU work (by kernel family) and GPU idle."""
    work = [(k, v) for k, v in o["extra_device_ms_by_family"].items() if abs(v) >= 0.05][:4]
    parts = ", ".join(f"{k} {v:+.2f}" for k, v in work) or "no family above 0.05 ms"
    bound = (
        "host/launch-bound (GPU idle grows)"
        if o["extra_gpu_idle_ms"] > o["extra_gpu_busy_ms"]
        else "GPU-bound"
    )
    return (
        f"{o['variant']}: {o['extra_median_ms']:+.2f} ms vs PreNorm = "
        f"{o['extra_gpu_busy_ms']:+.2f} ms more GPU work ({parts}) + "
        f"{o['extra_gpu_idle_ms']:+.2f} ms more GPU idle, {o['extra_device_events']:+d} kernels; {bound}."
    )


def render(result: dict) -> str:
    lines = [
        f"# Profile: {result['device']}",
        "",
        f"torch {result['torch']}, shape {result['shape']}, dtype {result['dtype']}. `median` = one "
        "synchronised call, `pipelined` = back-to-back calls, `host` = time for Python to enqueue one "
        "call, `GPU busy` = union of device-kernel intervals in one profiled call. GPU busy well below "
        "the median means the step is launch/Python-bound.",
        "",
        "| variant | median ms | pipelined ms | host ms | GPU busy ms | busy / median | device kernels "
        "| launch calls | host syncs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["variants"]:
        if "error" in r:
            lines.append(f"| {r['variant']} | error: {r['error'][:120]} |||||||")
            continue
        lines.append(
            f"| {r['variant']} | {r['median_ms']:.2f} | {r['pipelined_ms']:.2f} | {r['host_ms']:.2f} | "
            f"{r['gpu_busy_ms']:.2f} | {r['gpu_busy_fraction_of_median'] or 0:.2f} | {r['device_events']} | "
            f"{r['launch_calls']} | {sum(r['host_syncs'].values())} |"
        )
    lines += [
        "",
        "## Overhead vs PreNorm (same phase)",
        "",
        "| variant | ratio | extra ms | extra GPU busy | extra GPU idle | extra host | extra kernels "
        "| biggest device-time differences (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in result["overhead"]:
        fams = ", ".join(f"{k} {v:+.2f}" for k, v in list(o["extra_device_ms_by_family"].items())[:5])
        lines.append(
            f"| {o['variant']} | {o['ratio']:.3f} | {o['extra_median_ms']:+.2f} "
            f"| {o['extra_gpu_busy_ms']:+.2f} | {o['extra_gpu_idle_ms']:+.2f} | {o['extra_host_ms']:+.2f} "
            f"| {o['extra_device_events']:+d} | {fams} |"
        )
    lines += ["", "In words:", ""] + [f"- {explain(o)}" for o in result["overhead"]]
    for r in result["variants"]:
        if "error" in r:
            continue
        lines += [
            "",
            f"## {r['variant']}",
            "",
            "Device ms by kernel family: "
            + ", ".join(
                f"{k} {v:.2f} ({r['kernels_by_family'][k]})" for k, v in r["device_ms_by_family"].items()
            ),
            "",
            "Norm inputs: " + "; ".join(f"{k} x{v}" for k, v in r["norm_dtypes"].items()),
        ]
        if r["warnings"]:
            lines += ["", "Warnings: " + " | ".join(r["warnings"])]
        lines += [
            "",
            "| top by self device time | count | self device ms | self CPU ms |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| `{e['op'][:70]}` | {e['count']} | {e['self_device_ms']:.3f} | {e['self_cpu_ms']:.3f} |"
            for e in r["top_by_self_device"]
        ]
        lines += ["", "| top by self CPU time | count | self CPU ms | CPU total ms |", "|---|---|---|---|"]
        lines += [
            f"| `{e['op'][:70]}` | {e['count']} | {e['self_cpu_ms']:.3f} | {e['cpu_total_ms']:.3f} |"
            for e in r["top_by_self_cpu"]
        ]
    return "\n".join(lines) + "\n"
