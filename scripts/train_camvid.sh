#!/usr/bin/env bash
# Reproduces the shipped CamVid models from scratch on a CPU: the semantic AE on CamVid's label maps, the diffusion
# model (`camvid-diffusion`, semantic task) and, for the same CPU time, the same networks trained by cross-entropy
# without diffusion (the baseline); bench/camvid.py; then the one-step fine-tune (`camvid`) and its benchmark.
#   bash scripts/train_camvid.sh ../shared/data/camvid   # ~5 min + 2 x ~95 min + 2 x ~58 min (one thread each, side by side)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?usage: train_camvid.sh CAMVID_DIR (train/, trainannot/, val/, valannot/)}
RUNS=${RUNS:-runs}
MINUTES=${MINUTES:-95}
export OMP_WAIT_POLICY=PASSIVE
common="--data $DATA --val-data $DATA --classes camvid --resolution 256 --mixed-precision bf16 --channels-last true"
ldmseg train-ae --target semantic --num-bits 4 --out "$RUNS/camvid-sem-ae" $common --val-resolution 256 --val-num 32 \
    --crop 128 --crops-per-mask 4 --batch-size 4 --lr 1e-3 --warmup-steps 50 --max-steps 800 --val-every 200 \
    --checkpoint-every 200 --latent-noise 0.25 --threads 2 --resume latest
stage2="--tasks semantic --semantic-ae $RUNS/camvid-sem-ae/model $common --unet base --image-channels 64 \
    --prediction-type sample --loss-weighting none --reduction mean --self-condition-prob 0 --lr 5e-4 \
    --weight-decay 0.01 --warmup-steps 100 --ema-decay 0.999 --threads 1 --batch-size 8 \
    --time-limit-minutes $MINUTES --val-num 24 --checkpoint-every 250 --log-every 25 --resume latest"
ldmseg train $stage2 --out "$RUNS/camvid-ldmseg" --max-steps 2500 --val-every 500 --val-steps 2 \
    --inference-steps 4 > "$RUNS/camvid-ldmseg.log" 2>&1 &
ldmseg train $stage2 --out "$RUNS/camvid-direct" --objective direct --max-steps 1800 --val-every 450 \
    --val-steps 1 > "$RUNS/camvid-direct.log" 2>&1 &
wait
python3 scripts/package_camvid.py --pipeline "$RUNS/camvid-ldmseg/model" --name camvid-diffusion --steps 1
python3 bench/camvid.py --data "$DATA" --model camvid-diffusion --direct "$RUNS/camvid-direct/model" \
    --settings 2x1 4x1 8x1 1x4 --log "$RUNS/camvid-ldmseg.log" --direct-log "$RUNS/camvid-direct.log"
# One step (docs/usage.md, "One-step models"): the same recipe on train alone (val held out: the honest score) and
# on train + val (what ships, as CamVid practice trains), side by side on one thread each.
both="$RUNS/camvid-train-val"
mkdir -p "$both/train" "$both/trainannot"
for split in train val; do
    ln -sf "$(realpath "$DATA/$split")"/* "$both/train/"
    ln -sf "$(realpath "$DATA/${split}annot")"/* "$both/trainannot/"
done
onestep="--model camvid-diffusion --val-data $DATA --classes camvid --tasks semantic --resolution 256 --batch-size 8 \
    --lr 1e-4 --weight-decay 0.01 --warmup-steps 50 --ema-decay 0.995 --crop-scale 0.6 --color-jitter 0.2 \
    --max-steps 1500 --val-every 250 --val-num 101 --checkpoint-every 100 --threads 1 --seed 7 \
    --time-limit-minutes ${ONE_STEP_MINUTES:-58} --resume latest"
ldmseg distill $onestep --data "$DATA" --out "$RUNS/camvid-one-step-train" > "$RUNS/camvid-one-step-train.log" 2>&1 &
ldmseg distill $onestep --data "$both" --out "$RUNS/camvid-one-step" > "$RUNS/camvid-one-step.log" 2>&1 &
wait
python3 scripts/package_camvid.py --pipeline "$RUNS/camvid-one-step/model" --name camvid --train-val
python3 bench/one_step.py --curve-only --threads 2 --camvid "$DATA" --camvid-models \
    '`camvid-diffusion` (served before; train)=camvid-diffusion' \
    "one-step, train only (the honest val number)=$RUNS/camvid-one-step-train/model" \
    '`camvid` (one-step, train + val: val seen in training)=camvid'
