#!/usr/bin/env bash
# Stage 1 on real shapes (issue 35). Part 1: the demo AE's decoder fine-tuned on synthetic scenes only vs on
# synthetic scenes taking turns with real COCO instance masks, at equal CPU time (one thread each, side by side;
# the encoder frozen, so the latents stay valid). Part 2 (ANCHOR=1, what the demo ships since): the whole AE
# fine-tuned on the same mix for 3000 steps (64 CPU-minutes), its latents held near the demo's by --latent-anchor,
# so the demo's UNet keeps working unchanged; then scripts/package_demo.py --ae swaps it in.
# Part 3 (SILHOUETTES=1): the shipped AE continued the same way with a third source taking turns, the training
# photos' object outlines pasted over synthetic masks (--data silhouettes:JSON), for the small objects it misses.
# bench/ae_real.py scores them on the 37 held-out photos and on synthetic scenes.
#   bash scripts/train_ae_real.sh ../shared/data/coco-train-things    # MINUTES=20 by default
set -euo pipefail
cd "$(dirname "$0")/.."
COCO=${1:?usage: train_ae_real.sh COCO_DIR (instances.json, images/)}
RUNS=${RUNS:-runs}
MINUTES=${MINUTES:-20}
export OMP_WAIT_POLICY=PASSIVE
[ -f "$RUNS/coco-split/val.json" ] || ldmseg data instances-split "$COCO/instances.json" "$COCO/images" \
    "$RUNS/coco-split" --val 37 --seed 0
if [ "${SILHOUETTES:-0}" = 1 ]; then  # part 3: the shipped AE continued with real outlines pasted into synthetic masks
    ldmseg train-ae --init-from demo --latent-anchor 10 --resolution 512 --scene-sizes 512 --crop 128 --crops-per-mask 4 \
        --batch-size 4 --preset coco+dense+default --lr 1e-4 --warmup-steps 50 --latent-noise 0.35 \
        --mixed-precision "${PRECISION:-bf16}" --channels-last true --max-steps "${STEPS:-1400}" --val-every 100000 \
        --checkpoint-every 200 --threads 1 --resume latest --seed 5 --time-limit $(( ${SIL_MINUTES:-100} * 60 )) \
        --data "synthetic+silhouettes:$RUNS/coco-split/train.json+$RUNS/coco-split/train.json" \
        --out "$RUNS/ae-real-silhouettes"
    python3 bench/ae_real.py --real "$RUNS/coco-split/val.json" --name ae_real_silhouettes --ae demo \
        "$RUNS/ae-real-silhouettes/model"
    exit 0
fi
common="--init-from demo --freeze-encoder true --resolution 512 --scene-sizes 512 --crop 128 --crops-per-mask 4 \
    --batch-size 4 --preset coco+dense+default --lr 2e-4 --warmup-steps 50 --latent-noise 0.35 \
    --mixed-precision bf16 --channels-last true --max-steps 4000 --time-limit $(( MINUTES * 60 )) --val-every 100000 \
    --checkpoint-every 500 --threads 1 --resume latest"
ldmseg train-ae $common --data synthetic --out "$RUNS/ae-real-synth" &
ldmseg train-ae $common --data "synthetic+$RUNS/coco-split/train.json" --out "$RUNS/ae-real-mix" &
wait
if [ "${ANCHOR:-0}" = 1 ]; then
    ldmseg train-ae --init-from demo --latent-anchor 10 --resolution 512 --scene-sizes 512 --crop 128 --crops-per-mask 4 \
        --batch-size 4 --preset coco+dense+default --lr 2e-4 --warmup-steps 50 --latent-noise 0.35 \
        --mixed-precision bf16 --channels-last true --max-steps 3000 --val-every 100000 --checkpoint-every 250 \
        --threads 1 --resume latest --seed 3 --data "synthetic+$RUNS/coco-split/train.json" --out "$RUNS/ae-real-anchor"
    python3 scripts/package_demo.py --ae "$RUNS/ae-real-anchor/model"
fi
python3 bench/ae_real.py --real "$RUNS/coco-split/val.json" --ae demo "$RUNS/ae-real-synth/model" \
    "$RUNS/ae-real-mix/model"
