#!/usr/bin/env bash
# Trains the shipped trio: same data order, seed, size, steps and token budget; only the
# residual rule differs. On a GPU the three run at once (about 5 minutes on one H100).
# Usage: scripts/train_samples.sh [OUT_DIR]   (default: sample_models)
set -euo pipefail
out=${1:-sample_models}
common=(--n-layer 8 --n-head 4 --d-model 96 --block-size 256 --batch-size 64 --steps 5000
        --lr 2e-3 --min-lr 2e-4 --warmup 200 --seed 1337 --eval-every 250 --eval-windows 32
        --snapshots 0,250,1500 --no-progress)
python3 -m attnres.train --out "$out/shakespeare-prenorm" --residual prenorm "${common[@]}" &
python3 -m attnres.train --out "$out/shakespeare-full" --residual full "${common[@]}" &
python3 -m attnres.train --out "$out/shakespeare-block" --residual block --attnres-block-size 4 "${common[@]}" &
wait
