#!/usr/bin/env bash
# Stage 1 on real shapes (issue 35): the shipped mask AE's decoder fine-tuned on synthetic scenes only vs on
# synthetic scenes taking turns with real COCO instance masks, at equal CPU time (one thread each, side by side).
# The encoder is frozen, so the latents (and the shipped diffusion model trained on them) stay valid.
# Then bench/ae_real.py scores both beside the shipped AE on the 37 held-out photos and on synthetic scenes.
#   bash scripts/train_ae_real.sh ../shared/data/coco-train-things    # MINUTES=20 by default
set -euo pipefail
cd "$(dirname "$0")/.."
COCO=${1:?usage: train_ae_real.sh COCO_DIR (instances.json, images/)}
RUNS=${RUNS:-runs}
MINUTES=${MINUTES:-20}
export OMP_WAIT_POLICY=PASSIVE
[ -f "$RUNS/coco-split/val.json" ] || ldmseg data instances-split "$COCO/instances.json" "$COCO/images" \
    "$RUNS/coco-split" --val 37 --seed 0
common="--init-from demo --freeze-encoder true --size 512 --scene-sizes 512 --crop 128 --crops-per-mask 4 \
    --batch-size 4 --preset coco+dense+default --lr 2e-4 --warmup-steps 50 --latent-noise 0.35 \
    --mixed-precision bf16 --channels-last true --max-steps 4000 --time-limit-minutes $MINUTES --val-every 100000 \
    --checkpoint-every 500 --threads 1 --resume latest"
ldmseg train-ae $common --data synthetic --out "$RUNS/ae-real-synth" &
ldmseg train-ae $common --data "synthetic+$RUNS/coco-split/train.json" --out "$RUNS/ae-real-mix" &
wait
python3 bench/ae_real.py --real "$RUNS/coco-split/val.json" --ae demo "$RUNS/ae-real-synth/model" \
    "$RUNS/ae-real-mix/model"
