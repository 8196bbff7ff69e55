#!/usr/bin/env bash
# Table 3 of the paper on the embedded default: one single-task model per task, each trained from the same
# start as the shipped multi-task demo (the single-task demo of commit 5ea7db0, with the demo's own AEs) for
# as many examples of its task as the multi-task training drew (steps x batch x task weight, summed over the
# stretches; docs/benchmarks.md "Multi-task"), then bench/table3.py scores all four on the same fresh scenes.
# Runs on a GPU (minutes) or a CPU (~6 h on 2 cores); every run continues with --resume latest.
# MULTI_STEPS=N is the reduced scale that fits one CPU session: a multi-task model is trained from the same start
# for N steps too (task weights MULTI_WEIGHTS, default 0.4,0.3,0.3), each single-task model for N x its weight
# steps, and that multi-task model is the one compared (2N steps in all; N = 1800 took ~95 min on 2 cores).
#   scripts/table3.sh        # RUNS=runs; STEPS_INSTANCES / STEPS_SEMANTIC / STEPS_DEPTH override the budgets
#   MULTI_STEPS=1800 scripts/table3.sh
# MULTI_CONDITIONING=task-embedding+time trains that multi-task model with a vector per task added to the UNet's
# timestep embedding too (runs/table3-multi-time), MULTI_TASK_HEADS=true with an output conv per task
# (runs/table3-multi-heads), MULTI_TASK_BALANCE=M with each task's loss divided by its running mean (EMA momentum M;
# runs/table3-multi-balance); the single-task models are the same either way. SINGLES="semantic" trains only the
# single-task models named (the others' scores come from the kept results of the same budget, bench/table3.py), and
# AE=DIR decodes instances with another mask AE than the demo's (the one the kept results used, say). BENCH_NAME=N
# scores the multi-task model as a variant beside the kept plain multi-task scores of the same budget, in its own
# results file and docs section (bench/results/N.json), leaving the main table as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs}
LDMSEG=${LDMSEG:-ldmseg}
WORKERS=${WORKERS:-$(( $(nproc) - 1 ))}
# multi-task examples per task: stretch 1 (4381 steps, weights 0.4/0.3/0.3) + stretch 2 (3966 steps,
# 0.2/0.45/0.35) + stretch 3 (3922 steps, 0.2/0.55/0.25) + stretch 4 (6000 steps, 0.15/0.6/0.25)
# + stretch 5 (1500 steps, 0.1/0.3/0.6)
STRETCH2=${STRETCH2:-3966}
STRETCH3=${STRETCH3:-3922}
STRETCH4=${STRETCH4:-6000}
STRETCH5=${STRETCH5:-1500}
MULTI_STEPS=${MULTI_STEPS:-}
MULTI_WEIGHTS=${MULTI_WEIGHTS:-0.4,0.3,0.3}
MULTI_CONDITIONING=${MULTI_CONDITIONING:-task-embedding}
MULTI_TASK_HEADS=${MULTI_TASK_HEADS:-false}
MULTI_TASK_BALANCE=${MULTI_TASK_BALANCE:-0}
SINGLES=${SINGLES:-instances semantic depth}
for task in $SINGLES; do
    case $task in
        instances|semantic|depth) ;;
        *) echo "table3.sh: SINGLES: unknown task '$task' (instances, semantic, depth)" >&2; exit 2 ;;
    esac
done
AE=${AE:-demo}
BENCH_NAME=${BENCH_NAME:-table3}
PRECISION=${PRECISION:-bf16}  # 'no' (fp32) on CPUs without native bf16 (AVX2), where bf16 autocast is emulated
MULTI_NAME=multi
[ "$MULTI_CONDITIONING" = task-embedding ] || MULTI_NAME=$MULTI_NAME-time
[ "$MULTI_TASK_HEADS" = false ] || MULTI_NAME=$MULTI_NAME-heads
[ "$MULTI_TASK_BALANCE" = 0 ] || MULTI_NAME=$MULTI_NAME-balance
share() {  # INDEX: MULTI_STEPS x the INDEX-th task weight, rounded
    awk -v n="$MULTI_STEPS" -v w="$MULTI_WEIGHTS" -v i="$1" 'BEGIN { split(w, a, ","); printf "%d", n * a[i] + 0.5 }'
}
if [ -n "$MULTI_STEPS" ]; then
    STEPS_INSTANCES=${STEPS_INSTANCES:-$(share 1)}
    STEPS_SEMANTIC=${STEPS_SEMANTIC:-$(share 2)}
    STEPS_DEPTH=${STEPS_DEPTH:-$(share 3)}
fi
STEPS_INSTANCES=${STEPS_INSTANCES:-$(( (4381 * 40 + STRETCH2 * 20 + STRETCH3 * 20 + STRETCH4 * 15 + STRETCH5 * 10) / 100 ))}
STEPS_SEMANTIC=${STEPS_SEMANTIC:-$(( (4381 * 30 + STRETCH2 * 45 + STRETCH3 * 55 + STRETCH4 * 60 + STRETCH5 * 30) / 100 ))}
STEPS_DEPTH=${STEPS_DEPTH:-$(( (4381 * 30 + STRETCH2 * 35 + STRETCH3 * 25 + STRETCH4 * 25 + STRETCH5 * 60) / 100 ))}
START="$RUNS/table3-start"
if [ ! -f "$START/model_index.json" ]; then  # the single-task demo the multi-task training started from
    mkdir -p "$START.tmp"
    git archive 5ea7db0 src/ldmseg/weights/demo | tar -x -C "$START.tmp"
    rm -rf "$START" && mv "$START.tmp/src/ldmseg/weights/demo" "$START" && rm -rf "$START.tmp"
fi
from_start() {  # NAME TASKS STEPS SEED [FLAGS...]: one model trained from the common start
    local name=$1 tasks=$2 steps=$3 seed=$4
    shift 4
    $LDMSEG train --init-from "$START" --ae "$AE" --semantic-ae demo --depth-ae demo --tasks "$tasks" "$@" \
        --out "$RUNS/table3-$name" --seed "$seed" --max-steps "$steps" --resolution 128 --batch-size 32 --lr 2e-4 \
        --weight-decay 0.01 --warmup-steps 100 --unet base --image-channels 64 --prediction-type sample \
        --loss-weighting none --reduction mean --self-condition-prob 0.5 --ema-decay 0.999 --sampler dpm++ \
        --inference-steps 4 --val-steps 4 --val-num 48 --workers "$WORKERS" --val-every 1000 \
        --checkpoint-every 500 --log-every 50 --mixed-precision "$PRECISION" --resume latest
}
MULTI=demo
if [ -n "$MULTI_STEPS" ]; then
    from_start "$MULTI_NAME" instances,semantic,depth "$MULTI_STEPS" 14 --task-weights "$MULTI_WEIGHTS" \
        --conditioning "$MULTI_CONDITIONING" --task-heads "$MULTI_TASK_HEADS" --task-balance "$MULTI_TASK_BALANCE"
    MULTI="../$RUNS/table3-$MULTI_NAME/model"
fi
declare -A STEPS=([instances]=$STEPS_INSTANCES [semantic]=$STEPS_SEMANTIC [depth]=$STEPS_DEPTH)
declare -A SEED=([instances]=11 [semantic]=12 [depth]=13)
single_models=()
for task in $SINGLES; do
    from_start "$task" "$task" "${STEPS[$task]}" "${SEED[$task]}"
    single_models+=("--$task" "../$RUNS/table3-$task/model")
done
compared=(--multi "$MULTI")
[ "$BENCH_NAME" = table3 ] || compared=(--multi kept --also "$MULTI_NAME=$MULTI" --name "$BENCH_NAME")
(cd bench && python table3.py "${single_models[@]}" "${compared[@]}" \
    --steps "multi=${MULTI_STEPS:-19769},instances=$STEPS_INSTANCES,semantic=$STEPS_SEMANTIC,depth=$STEPS_DEPTH")
