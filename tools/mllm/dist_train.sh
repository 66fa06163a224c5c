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
    if [ "$NPROC" -gt 1 ]; then
        # accelerate starts ONE process, whatever --num_processes says, when
        # its config (ACCELERATE_CONFIG, else its default config file) is
        # single-process (distributed_type NO), or without a config when it
        # finds fewer than two accelerators. Ask accelerate itself (its own
        # config reader and device detection; skipped if they changed).
        WHY=$(ACCELERATE_CONFIG="${ACCELERATE_CONFIG:-}" "$PYTHON" - <<'PY'
import os
try:
    from accelerate.commands.config import default_config_file
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import (get_distributed_backend,
                                            get_torch_accelerator_backend)
except ImportError:
    print('ok')
else:
    path = os.environ.get('ACCELERATE_CONFIG') or (
        default_config_file if os.path.isfile(default_config_file) else '')
    if path:
        kind = load_config_from_file(path).distributed_type
        kind = str(getattr(kind, 'value', kind))
        print(f'config {path} has distributed_type {kind}'
              if kind == 'NO' else 'ok')
    else:
        device, module = get_torch_accelerator_backend()
        count = (module.device_count()
                 if get_distributed_backend(device) is not None else 0)
        print('ok' if count > 1 else
              f'no accelerate config and {count} accelerator(s) found')
PY
)
        if [ "$WHY" != "ok" ]; then
            echo "LAUNCHER=accelerate with NUM_PROCS=$NPROC would run a single process ($WHY); use the default torchrun launcher, or an accelerate config with several processes (ACCELERATE_CONFIG, e.g. multi-GPU or multi-CPU / MPI)" >&2
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
