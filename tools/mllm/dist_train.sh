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
    if [ "$NPROC" -gt 1 ] && [ -z "${ACCELERATE_CONFIG:-}" ]; then
        # Without a config file, accelerate launches several processes only
        # when it finds more than one accelerator; otherwise it silently
        # starts ONE process whatever --num_processes says. Ask accelerate
        # itself (same detection as its launcher; skipped if it changed).
        DEVICES=$("$PYTHON" - <<'PY'
import os
try:
    from accelerate.commands.config import default_config_file
    from accelerate.commands.launch import (get_distributed_backend,
                                            get_torch_accelerator_backend)
except ImportError:
    print('skip')
else:
    if os.path.isfile(default_config_file):
        print('skip')  # accelerate reads the default config file instead
    else:
        kind, module = get_torch_accelerator_backend()
        print(module.device_count()
              if get_distributed_backend(kind) is not None else 0)
PY
)
        if [ "$DEVICES" != "skip" ] && [ "$DEVICES" -lt 2 ]; then
            echo "LAUNCHER=accelerate with NUM_PROCS=$NPROC and no accelerate config would run a single process ($DEVICES accelerator(s) found); use the default torchrun launcher, or give ACCELERATE_CONFIG (e.g. a multi-CPU / MPI config)" >&2
            exit 2
        fi
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
