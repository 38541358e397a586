#!/usr/bin/env bash
# Where the AttnRes overhead goes on a GPU, then the benchmark again, in one command (< 7 min, H100):
#   bash benchmarks/gpu_profile.sh
# 1. CUDA tests of the fused kernel, the default path (test_kernels.py) and the CUDA-graph forward
#    (test_cuda_graph.py);
# 2. benchmarks/profile.py: torch.profiler of one gpt2-small forward / training step per variant
#    -> profile-<gpu>.json / .md (top ops, kernel count, GPU busy vs wall, overhead per kernel family);
# 3. benchmarks/run.py at gpt2-small and deep (no sample shape, compiled rows within --budget-s)
#    -> <gpu>.json / .md. Outputs go to $OUT if set (flat, 5 files), else benchmarks/results/.
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"

echo "== kernel tests" >&2
timeout 75 python3 -m pytest -q -p no:cacheprovider tests/attnres/test_kernels.py tests/benchmarks/test_cuda_graph.py 2>&1 | tail -40 | tee "$out_dir/$name-kernel-tests.txt"
tests_rc=${PIPESTATUS[0]}

echo "== profile -> $out_dir/profile-${name#gpu-}.json" >&2
timeout 120 python3 -m benchmarks.profile --device cuda --shape gpt2-small --out-dir "$out_dir" --name "profile-${name#gpu-}"
prof_rc=$?
[ -f "$out_dir/profile-${name#gpu-}.md" ] && head -40 "$out_dir/profile-${name#gpu-}.md"

echo "== benchmark -> $out_dir/$name.json" >&2
timeout 260 python3 -m benchmarks.run --device cuda --shapes gpt2-small deep --no-probe --out "$out_dir/$name.json" --budget-s 180 "$@"
bench_rc=$?

[ -f "$out_dir/$name.md" ] && cat "$out_dir/$name.md"
echo "kernel tests exit $tests_rc, profile exit $prof_rc, benchmark exit $bench_rc" >&2
[ "$tests_rc" -eq 0 ] && [ "$prof_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
