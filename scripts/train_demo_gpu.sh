#!/usr/bin/env bash
# The shipped demo weights as trained on one GPU (an H100 here): each stage fits a ~8-minute run.
#   scripts/train_demo_gpu.sh ae        # stage 1 -> $RUNS/demo-ae/model
#   scripts/train_demo_gpu.sh ldmseg    # stage 2 on the packaged AE (--ae demo) -> $RUNS/demo-ldmseg/model
# A 300-step probe measures this machine's speed, then the run gets as many steps as fit $MINUTES
# (the cosine schedule ends there; --time-limit-minutes stops it if the probe was optimistic). STEPS=N skips
# the probe (short probes underestimate: start-up dominates them).
# The 2-core-CPU recipe is scripts/train_demo.sh.
set -euo pipefail
STAGE=${1:?ae or ldmseg}
RUNS=${RUNS:-runs}
MINUTES=${MINUTES:-7}
WORKERS=${WORKERS:-$(( $(nproc) - 1 ))}
LDMSEG=${LDMSEG:-ldmseg}

AE_ARGS=(train-ae --size 256 --preset default+dense --batch-size 16 --lr 1e-3 --warmup-steps 200
         --encoder-channels 32 64 128 256 --decoder-channels 256 --decoder-blocks 1 --latent-noise 0.2
         --val-size 256 --val-num 64 --mixed-precision bf16 --num-workers "$WORKERS" --log-every 50)
LDM_ARGS=(train --ae demo --size 128 --batch-size 64 --lr 5e-4 --weight-decay 0.01 --warmup-steps 200
          --unet base --image-channels 64 --prediction-type sample --loss-weighting none --reduction mean
          --self-condition-prob 0 --ema-decay 0.999 --inference-steps 10 --val-num 64
          --num-workers "$WORKERS" --log-every 50)

steps_that_fit() {  # steps_that_fit ARGS... : time a short probe (PROBE steps, 300), scale to $MINUTES
    local probe="$RUNS/probe" start end n=${PROBE:-300}
    rm -rf "$probe"
    start=$(date +%s.%N)
    $LDMSEG "$@" --out "$probe" --max-steps "$n" --val-every 0 --checkpoint-every 100000 >/dev/null 2>&1
    end=$(date +%s.%N)
    rm -rf "$probe"
    python3 -c "print(int($n / ($end - $start) * $MINUTES * 60 * 1.15))"
}

case "$STAGE" in
    ae) args=("${AE_ARGS[@]}"); out="$RUNS/demo-ae"; every=1000 ;;
    ldmseg) args=("${LDM_ARGS[@]}"); out="$RUNS/demo-ldmseg"; every=1000 ;;
    *) echo "usage: $0 ae|ldmseg" >&2; exit 2 ;;
esac
steps=${STEPS:-$(steps_that_fit "${args[@]}")}
echo "training $STAGE for $steps steps (probe-based, $MINUTES min)"
$LDMSEG "${args[@]}" --out "$out" --max-steps "$steps" --val-every "$every" --checkpoint-every "$every" \
    --time-limit-minutes "$(python3 -c "print($MINUTES + 0.5)")" --resume latest
