#!/usr/bin/env bash
# The paper's COCO model made one-step (docs/usage.md, "One-step models"), from COCO train2017 images alone: the
# converted model predicts every training image once (its served output is the target), then `ldmseg distill`
# fine-tunes a copy to one UNet call per image with the permutation-invariant instance loss.
#   MODEL=ldmseg-coco COCO=/data/coco GPUS=8 scripts/distill_paper_gpu.sh
# MODEL: a converted pipeline (`ldmseg convert-original`); COCO: holds train2017/ and, for validation,
# a COCO-panoptic val folder at $VAL (images/, panoptic.json, panoptic/: `ldmseg data` converts COCO's own).
# Time: not measured (no GPU was lent while this was written); plan on roughly 1 s per 512^2 image for the teacher
# at 20 DDIM steps in bf16 on one H100 (118k images: ~30 GPU-hours, or ~4 hours on 8 GPUs) and ~0.5 s per step
# for the distillation at batch 64 over 8 GPUs (20k steps: ~3 hours). Resume either part by running it again.
set -euo pipefail
MODEL=${MODEL:-ldmseg-coco}
COCO=${COCO:?set COCO to the folder holding train2017/}
VAL=${VAL:-$COCO/panoptic_val_ldmseg}
RUNS=${RUNS:-runs}
GPUS=${GPUS:-$(nvidia-smi -L | wc -l)}
LDMSEG=${LDMSEG:-ldmseg}
# 1. the teacher's predictions, written as a COCO-panoptic set beside the images (class-agnostic instances)
$LDMSEG predict --model "$MODEL" --task instances --preset fast --precision bf16 --device cuda \
    --images "$COCO/train2017" --out "$RUNS/coco-teacher" --batch-size 16
ln -sfn "$COCO/train2017" "$RUNS/coco-teacher/images"
# 2. one-step fine-tuning on those targets (labels now: the teacher's own output), data-parallel over the GPUs
accelerate launch --num_processes "$GPUS" --mixed_precision bf16 -m ldmseg distill --model "$MODEL" \
    --data "$RUNS/coco-teacher" --val-data "$VAL" --tasks instances --out "$RUNS/coco-one-step" \
    --resolution 512 --batch-size 8 --lr 3e-5 --warmup-steps 500 --max-steps 20000 --ema-decay 0.999 \
    --mixed-precision bf16 --gradient-checkpointing true --val-every 2000 --val-num 500 --checkpoint-every 1000 \
    --workers 8 --resume latest
# 3. the one-step model on COCO val2017: one UNet call per image
$LDMSEG predict --model "$RUNS/coco-one-step/model" --device cuda --images "$VAL/images" \
    --gt-json "$VAL/panoptic.json" --out "$RUNS/coco-one-step-val"
$LDMSEG evaluate --task instances --gt-json "$VAL/panoptic.json" --gt-dir "$VAL/panoptic" \
    --pred-json "$RUNS/coco-one-step-val/panoptic.json" --pred-dir "$RUNS/coco-one-step-val/panoptic"
