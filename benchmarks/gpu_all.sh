#!/usr/bin/env bash
# Every GPU benchmark, in one command (about 5-8 minutes on an H100):
#   bash benchmarks/gpu_all.sh
# 1. the CUDA tests of the fused kernel (tests/attnres/test_kernels.py), log kept beside the results;
# 2. the full benchmark (bf16 autocast, sample + gpt2-small + deep, inference + train, fused + compiled)
#    into $OUT if set (the device tool's output folder), else benchmarks/results/.
# Exit status: non-zero if either step failed; the benchmark runs even when a test fails.
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"

echo "== kernel tests" >&2
python3 -m pytest -q -p no:cacheprovider tests/attnres/test_kernels.py 2>&1 | tee "$out_dir/$name-kernel-tests.txt"
tests_rc=${PIPESTATUS[0]}

echo "== benchmark -> $out_dir/$name.json" >&2
python3 -m benchmarks.run --device cuda --out "$out_dir/$name.json" --budget-s 420 "$@"
bench_rc=$?

[ -f "$out_dir/$name.md" ] && cat "$out_dir/$name.md"
echo "kernel tests exit $tests_rc, benchmark exit $bench_rc" >&2
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
