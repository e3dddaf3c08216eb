#!/usr/bin/env bash
# rnnlab-train's experiments on a GPU, end to end and short, within a time budget:
#   bash scripts/gpu_carry.sh                 here, first: Hydra's wheels and the data sets into .gpu_carry/
#   bash scripts/gpu_train.sh [BUDGET_SECONDS] there (default 240), with .gpu_carry in the device tool's carry
# Steps, most important first; each is cut at its own limit and at what is left of the budget:
#   1. the main job (rnnlab-train's default, backend "auto") on one GPU, fp32: its val/loss_best beside the CPU's
#      (README)
#   2. the same for one epoch in bf16-mixed with the fused kernels forced (model.backend=triton; on the CPU
#      "torch", the reference path, which is what "triton" needs the interpreter for there)
#   3. FSDP (trainer=fsdp, one GPU) for one epoch, and rnnlab-eval of its checkpoint on the GPU
#   4. each experiment but PTB's (never downloaded, nor in ../shared/data) for 20 batches in bf16-mixed, its data
#      set from .gpu_carry/data or $RNNLAB_DATA_DIR
#   5. rnnlab-generate from step 1's checkpoint (it samples on the CPU)
# Without CUDA it runs the same on the CPU (trainer=cpu) without FSDP, whose Lightning strategy needs a GPU:
# tests/test_gpu_check.py runs it so, one batch a run ($EXTRA: overrides added to every run, there
# debug=fast_dev_run). Results (each run's folder and the log) go to
# benchmarks/results/gpu-<device>/train, or on the device machine (where $OUT is set) into $OUT/gpu_train.tar.gz,
# with the log also in $OUT/gpu_train.log as it is written.
set -uo pipefail  # a failing step does not stop the later ones
source "$(dirname "$0")/gpu_env.sh"  # cd to the checkout; PY, name, results_in
source scripts/gpu_steps.sh  # limit_for, step
deadline=$((SECONDS + ${1:-240}))
results_in train gpu_train.log
if ! "$PY" -c "import hydra" 2>/dev/null; then  # the device machine's Python has no Hydra: .gpu_carry's wheels
    site=$(mktemp -d)
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .gpu_carry/wheels/*.whl \
        2>&1 | tee -a "$log" || exit 1
    export PYTHONPATH="$PYTHONPATH:$site"
fi
[[ -d .gpu_carry/data ]] && export RNNLAB_DATA_DIR=${RNNLAB_DATA_DIR:-$PWD/.gpu_carry/data}
trainer=gpu fused=triton
[[ $name == cpu ]] && trainer=cpu fused=torch
"$PY" -c "import torch, lightning, hydra; print('torch', torch.__version__, 'lightning', lightning.__version__, \
'hydra', hydra.__version__)" 2>&1 | tee -a "$log"

# train RUN LIMIT TRAINER OVERRIDES...: rnnlab-train trainer=TRAINER into $res/RUN
train() {
    local run=$1 limit=$2 trainer=$3
    shift 3
    # shellcheck disable=SC2086  # $EXTRA: one override a word
    step "train $run" "$(limit_for "$limit")" "$PY" -m rnnlab.train "trainer=$trainer" "hydra.run.dir=$res/$run" "$@" \
        ${EXTRA:-}
}
short=(trainer.max_epochs=1 +trainer.limit_train_batches=20 +trainer.limit_val_batches=5 +trainer.limit_test_batches=5)

train main 150 "$trainer"
train "bf16-$fused" 60 "$trainer" trainer.max_epochs=1 +trainer.precision=bf16-mixed "model.backend=$fused"
if [[ $trainer == gpu ]]; then
    train fsdp 60 fsdp trainer.devices=1 "${short[@]}" &&
        step "eval fsdp" "$(limit_for 45)" "$PY" -m rnnlab.evaluate "$res/fsdp/checkpoints/last.ckpt"
else
    echo "=== train fsdp: skipped, Lightning's FSDP strategy needs a GPU" | tee -a "$log"
fi
for experiment in sentiment_sst2 forecast_etth1 forecast_airline lm_shakespeare_char; do
    train "$experiment" 60 "$trainer" "experiment=$experiment" "${short[@]}" +trainer.precision=bf16-mixed
done
step "generate" "$(limit_for 30)" "$PY" -m rnnlab.generate "$res/main/checkpoints/last.ckpt" --length 200

if [[ -n ${OUT:-} ]]; then
    cp "$log" "$res/"
    tar -czf "$OUT/gpu_train.tar.gz" --exclude="*.ckpt" -C "$(dirname "$res")" train  # checkpoints: up to 80 MB
    echo "packed $res into \$OUT/gpu_train.tar.gz" | tee -a "$log"
fi
echo "done in ${SECONDS}s; results in $res" | tee -a "$log"
