#!/usr/bin/env bash
# Train the mask AE on a GPU machine for a given number of minutes, at the paper's 512^2 scale, and leave
# safetensors weights to bring back (RUNS/ae-gpu/model). It continues the demo's instances AE (the slot-head
# AE) unless INIT is set, and resumes its own run with --resume latest if interrupted. Scenes are made by
# $WORKERS processes.
# A new encoder changes the latent space: fine-tune stage 2 on it before shipping it (the last line).
#   MINUTES=10 scripts/train_ae_gpu.sh          # RUNS=runs, INIT=demo-v2 by default
# Real shapes (issue 35): DATA="synthetic+silhouettes:SPLIT/train.json+SPLIT/train.json" (synthetic scenes, the
# same with a COCO instances set's outlines pasted in, and its own masks, taking turns; DATA=synthetic by default).
set -euo pipefail
MINUTES=${MINUTES:-10}
RUNS=${RUNS:-runs}
INIT=${INIT:-demo-v2}
DATA=${DATA:-synthetic}
WORKERS=${WORKERS:-$(( $(nproc) - 1 ))}
LDMSEG=${LDMSEG:-ldmseg}
$LDMSEG train-ae --out "$RUNS/ae-gpu" --init-from "$INIT" --max-steps 1000000 --time-limit $(( MINUTES * 60 )) \
    --data "$DATA" --preset coco+dense+default --scene-sizes 256 512 --crop 256 --crops-per-mask 4 --batch-size 16 \
    --lr 3e-4 --warmup-steps 100 --latent-noise 0.2 --mixed-precision bf16 --channels-last true \
    --val-resolution 512 --val-num 64 --workers "$WORKERS" --val-every 1000 --checkpoint-every 1000 \
    --log-every 50 --resume latest
echo "next: $LDMSEG train --init-from demo --ae $RUNS/ae-gpu/model --tasks instances,semantic,depth ... (stage 2 on it)"
