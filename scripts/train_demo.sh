#!/usr/bin/env bash
# Reproduces the shipped demo weights (src/ldmseg/weights/demo) from scratch, on a 2-core CPU.
# Stage 1 takes ~45 min, stage 2 as long as you give it (STAGE2_STEPS); both resume with --resume latest.
set -euo pipefail
STAGE2_STEPS=${STAGE2_STEPS:-2000}
ldmseg train-ae --out runs/demo-ae --max-steps 2800 --batch-size 16 --lr 1e-3 --warmup-steps 100 \
    --encoder-channels 16 32 64 128 --decoder-channels 128 --decoder-blocks 1 --latent-noise 0.1 \
    --val-every 400 --checkpoint-every 200 --num-workers 1 --log-every 25 --resume latest
ldmseg train --ae runs/demo-ae/model --out runs/demo-ldmseg --max-steps "$STAGE2_STEPS" --batch-size 16 \
    --lr 5e-4 --weight-decay 0.01 --warmup-steps 100 --unet small --prediction-type sample \
    --loss-weighting none --reduction mean --self-condition-prob 0 --image-channels 64 \
    --inference-steps 10 --val-every 250 --checkpoint-every 250 --num-workers 1 --log-every 25 --resume latest
python scripts/package_demo.py --ae runs/demo-ae/model --pipeline runs/demo-ldmseg/model
