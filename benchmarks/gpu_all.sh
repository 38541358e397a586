#!/usr/bin/env bash
# Every GPU benchmark, in one command (about 6-9 minutes on an H100):
#   bash benchmarks/gpu_all.sh
# 0. the field's AttnRes libraries (requirements-gpu.txt) from wheels in .whl/ when there are any
#    (a GPU machine without an index: fetch them beforehand with
#    `python3 -m pip download --no-deps --only-binary=:all: -d .whl -r requirements-gpu.txt`, all pure
#    Python), installed with --no-deps into /tmp/attnres-field so the machine's torch and triton stay;
# 1. the CUDA tests of the fused kernel, the CUDA-graph forward and the field-kernel adapters
#    (tests/attnres/test_kernels.py, tests/benchmarks/test_cuda_graph.py, tests/attnres/test_field_kernels.py), log kept beside the results;
# 2. the full benchmark (bf16 autocast, sample + gpt2-small + deep, inference + train, fused + compiled,
#    and a row per field kernel that can run each model) into $OUT if set (the device tool's output
#    folder), else benchmarks/results/.
# Exit status: non-zero if either step failed; the benchmark runs even when a test fails.
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"

if compgen -G ".whl/*.whl" >/dev/null; then
  echo "== field kernels from .whl/" >&2
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/attnres-field .whl/*.whl && export PYTHONPATH="/tmp/attnres-field${PYTHONPATH:+:$PYTHONPATH}"
fi
python3 -m pip list 2>/dev/null | grep -iE '^(fla-core|flash-attn-res|liger-kernel|fast-attnres|einops|triton) ' || true
ls -d /tmp/attnres-field/*.dist-info 2>/dev/null || true

echo "== kernel tests" >&2
python3 -m pytest -q -rs -p no:cacheprovider tests/attnres/test_kernels.py tests/benchmarks/test_cuda_graph.py \
  tests/attnres/test_field_kernels.py \
  2>&1 | tee "$out_dir/$name-kernel-tests.txt"
tests_rc=${PIPESTATUS[0]}

echo "== benchmark -> $out_dir/$name.json" >&2
python3 -m benchmarks.run --device cuda --out "$out_dir/$name.json" --budget-s 420 "$@"
bench_rc=$?

[ -f "$out_dir/$name.md" ] && cat "$out_dir/$name.md"
echo "kernel tests exit $tests_rc, benchmark exit $bench_rc" >&2
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
