#!/usr/bin/env bash
# Trains the deep sample models on one GPU, every run at once, and measures them:
#   the headline trio     sample_models/shakespeare-{prenorm,full,block}: 24 blocks = 48 sublayers,
#                         Block S = 8 (6 blocks), snapshots at steps 0, 250 and 1000
#   the depth series      sample_models/depth/{prenorm,block}-{4,8,16}: the same recipe at 4, 8 and
#                         16 Transformer blocks (the trio is the 24-block point)
#   two more seeds        of the headline PreNorm and Block recipe (loss and dilution only)
# Same data, data order, seed and steps within each comparison; only the residual rule differs.
# Every run keeps a resume state, so running this again continues where a stopped run ended.
#
#   bash scripts/train_deep_samples.sh [OUT_DIR]   (default: $OUT if set, else runs/deep)
#   STEPS=2 BATCH=2 EVAL_WINDOWS=2 DEVICE=cpu bash scripts/train_deep_samples.sh /tmp/smoke   (a smoke test)
#
# Afterwards OUT_DIR holds one .tar per shipped group (each under 16 MiB, without resume states),
# dilution.json / dilution.md (scripts/dilution_table.py on every model and snapshot) and train.log.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-runs/deep}}
runs="$out/runs"
mkdir -p "$runs"
steps=${STEPS:-2000}
device=${DEVICE:-auto}
common=(--n-head 4 --d-model 64 --block-size 256 --batch-size "${BATCH:-128}" --steps "$steps"
        --lr 3e-3 --min-lr 3e-4 --warmup 200 --schedule wsd --decay-fraction 0.2
        --eval-every 250 --eval-windows "${EVAL_WINDOWS:-32}" --checkpoint-every 250 --resume --device "$device"
        --no-progress)
run() {  # run NAME ARGS...: one training process in the background, its output in NAME.log
  local name=$1; shift
  python3 -m attnres.train --out "$runs/$name" "${common[@]}" "$@" >"$runs/$name.log" 2>&1 &
}
snaps=(--snapshots "0,250,1000")
for seed in 1337 2024 7; do
  extra=(); [ "$seed" = 1337 ] && extra=("${snaps[@]}")
  run "shakespeare-prenorm-s$seed" --n-layer 24 --residual prenorm --seed "$seed" "${extra[@]}"
  run "shakespeare-block-s$seed" --n-layer 24 --residual block --attnres-block-size 8 --seed "$seed" "${extra[@]}"
done
run shakespeare-full-s1337 --n-layer 24 --residual full --seed 1337 "${snaps[@]}"
for depth in 4 8 16; do
  run "prenorm-$depth" --n-layer "$depth" --residual prenorm --seed 1337
  run "block-$depth" --n-layer "$depth" --residual block --attnres-block-size 8 --seed 1337
done
wait
status=0
for log in "$runs"/*.log; do
  tail -n 1 "$log" | grep -q '"rank"' || { echo "failed: $log" >&2; tail -n 5 "$log" >&2; status=1; }
done
# What ships: model files without resume states; the seeds only as cards and logs.
pack() {  # pack TAR DIR...
  local tarfile=$1; shift
  tar --exclude=resume -C "$runs" -cf "$out/$tarfile" "$@"
}
for rule in prenorm full block; do pack "shakespeare-$rule.tar" "shakespeare-$rule-s1337"; done
pack depth-series.tar prenorm-4 block-4 prenorm-8 block-8 prenorm-16 block-16
tar -C "$runs" -cf "$out/seeds.tar" $(cd "$runs" && ls -d shakespeare-*-s2024/README.md shakespeare-*-s7/README.md \
  shakespeare-*-s2024/train_log.csv shakespeare-*-s7/train_log.csv 2>/dev/null)
python3 scripts/dilution_table.py "$runs"/shakespeare-*-s*/ "$runs"/prenorm-*/ "$runs"/block-*/ --snapshots --eval-windows "${EVAL_WINDOWS:-32}" \
  --out "$out/dilution" || status=1
cat "$runs"/*.log >"$out/train.log"
exit $status
