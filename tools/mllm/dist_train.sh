#!/usr/bin/env bash
# Usage: bash tools/mllm/dist_train.sh NUM_PROCS [tools/mllm/train.py args...]
# Multi-process MergeMix MLLM training with torchrun (default) or accelerate
# (LAUNCHER=accelerate; ACCELERATE_CONFIG=path optional). DeepSpeed: pass
# --deepspeed ds_config.json to train.py (HF Trainer pass-through).
set -euo pipefail
if [ "$#" -lt 1 ]; then
    echo "usage: bash tools/mllm/dist_train.sh NUM_PROCS [tools/mllm/train.py args...]" >&2
    exit 2
fi
NPROC=$1
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29501}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
LAUNCHER=${LAUNCHER:-torchrun}
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PYTHON=${PYTHON:-python}
export PYTHONPATH="$ROOT:${PYTHONPATH:-}"
if [ "$LAUNCHER" = "accelerate" ]; then
    if [ "$NPROC" -gt 1 ] && [ -z "${ACCELERATE_CONFIG:-}" ] && \
        [ "$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')" = "0" ]; then
        # accelerate's default launch on a machine without GPUs starts ONE
        # process whatever --num_processes says
        echo "LAUNCHER=accelerate with NUM_PROCS=$NPROC on a machine without GPUs would run a single process; use the default torchrun launcher for CPU processes (or give ACCELERATE_CONFIG)" >&2
        exit 2
    fi
    EXTRA=()
    if [ -n "${ACCELERATE_CONFIG:-}" ]; then
        EXTRA=(--config_file "$ACCELERATE_CONFIG")
    fi
    "$PYTHON" -m accelerate.commands.launch "${EXTRA[@]}" \
        --num_processes "$NPROC" --num_machines "$NNODES" \
        --machine_rank "$NODE_RANK" --main_process_ip "$MASTER_ADDR" \
        --main_process_port "$PORT" \
        "$ROOT/tools/mllm/train.py" "${@:2}"
else
    "$PYTHON" -m torch.distributed.run \
        --nnodes="$NNODES" --node_rank="$NODE_RANK" \
        --master_addr="$MASTER_ADDR" --nproc_per_node="$NPROC" \
        --master_port="$PORT" \
        "$ROOT/tools/mllm/train.py" "${@:2}"
fi
