"""Fault injection and measurement hooks for the reliability tests.

Not part of the library: ``tools/reliability/train_with_faults.py`` imports
this module (which registers the hooks) and adds them to a config from the
``MERGEMIX_FAULTS`` / ``MERGEMIX_RECORD`` environment variables.

* :class:`FaultInjectionHook` -- SIGKILL the process at a training iteration,
  at a validation iteration, or half-way through writing a checkpoint; raise
  on one rank at an iteration; turn one iteration's loss into NaN.
* :class:`ReseedHook` -- re-seed the global generators once the model is
  built (same initial weights, different mixing draws).
* :class:`LossRecorderHook` -- write every rank's per-iteration loss to
  ``<dir>/loss_rank<r>.json`` (for the distributed-equivalence comparison).
"""
import io
import json
import os
import os.path as osp
import signal
from typing import Optional

import torch
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS

__all__ = ['FaultInjectionHook', 'LossRecorderHook', 'ReseedHook']


def _die() -> None:
    """SIGKILL this process: no cleanup, no atexit, like the OOM killer."""
    os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module()
class FaultInjectionHook(Hook):
    """Inject one fault into a training run.

    Args:
        kill_at_iter (int, optional): SIGKILL before this 1-based global
            training iteration runs.
        kill_rank (int, optional): Only on this rank (None: every rank).
        kill_in_val (list, optional): ``[epoch, k]``: SIGKILL after the k-th
            (1-based) validation iteration that follows training epoch
            ``epoch``.
        kill_in_save (int, optional): SIGKILL half-way through writing the
            checkpoint of this epoch (the first half of the bytes is on
            disk, fsync-ed).
        raise_at_iter (int, optional): Raise ``RuntimeError`` before this
            iteration, on rank ``raise_rank``.
        raise_rank (int): See above. Defaults to 0.
        nan_at_iter (int, optional): Make the head's output NaN at this
            iteration (so the loss is NaN) without touching the weights.
        nan_rank (int, optional): Only on this rank (None: every rank).
        nan_input_at_iter (int, optional): Replace the batch inputs by float
            tensors with a NaN in sample 0 at this iteration.
    """

    priority = 'HIGHEST'

    def __init__(self,
                 kill_at_iter: Optional[int] = None,
                 kill_rank: Optional[int] = None,
                 kill_in_val: Optional[list] = None,
                 kill_in_save: Optional[int] = None,
                 raise_at_iter: Optional[int] = None,
                 raise_rank: int = 0,
                 nan_at_iter: Optional[int] = None,
                 nan_rank: Optional[int] = None,
                 nan_input_at_iter: Optional[int] = None):
        self.kill_at_iter = kill_at_iter
        self.kill_rank = kill_rank
        self.kill_in_val = kill_in_val
        self.kill_in_save = kill_in_save
        self.raise_at_iter = raise_at_iter
        self.raise_rank = raise_rank
        self.nan_at_iter = nan_at_iter
        self.nan_rank = nan_rank
        self.nan_input_at_iter = nan_input_at_iter
        self._nan_now = False
        self._val_count = 0

    def before_train(self, runner) -> None:
        if self.nan_at_iter is None:
            return
        model = runner.model.module if hasattr(runner.model,
                                               'module') else runner.model

        def poison(module, args, output):
            return output * float('nan') if self._nan_now else output

        model.head.register_forward_hook(poison)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        it = runner.iter + 1
        if self.kill_at_iter == it and (self.kill_rank is None or
                                        get_dist_info()[0] == self.kill_rank):
            _die()
        if self.raise_at_iter == it and get_dist_info()[0] == self.raise_rank:
            raise RuntimeError(
                f'injected failure on rank {self.raise_rank} at iteration '
                f'{it}')
        self._nan_now = self.nan_at_iter == it and (
            self.nan_rank is None or get_dist_info()[0] == self.nan_rank)
        if self.nan_input_at_iter == it and data_batch is not None:
            inputs = data_batch['inputs']
            if isinstance(inputs, torch.Tensor):
                inputs = list(inputs)
            inputs = [x.float() for x in inputs]
            inputs[0] = inputs[0].clone()
            inputs[0].view(-1)[0] = float('nan')
            data_batch['inputs'] = inputs

    def before_val_epoch(self, runner) -> None:
        self._val_count = 0

    def after_val_iter(self, runner, batch_idx, data_batch=None,
                       outputs=None):
        self._val_count += 1
        if self.kill_in_val and runner.epoch == self.kill_in_val[0] and \
                self._val_count == self.kill_in_val[1]:
            _die()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.kill_in_save is None or \
                checkpoint['meta'].get('epoch') != self.kill_in_save:
            return
        original = torch.save

        def half_write(f, data: bytes):
            f.write(data[:len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
            _die()

        def half_save(obj, f, *args, **kwargs):
            if isinstance(f, io.BytesIO):  # mmengine serialises to memory
                return original(obj, f, *args, **kwargs)
            buf = io.BytesIO()
            original(obj, buf, *args, **kwargs)
            if isinstance(f, (str, os.PathLike)):
                f = open(f, 'wb')
            half_write(f, buf.getvalue())

        def half_put(backend, obj: bytes, filepath):
            # mmengine's own (non-atomic) save: open(path, 'wb') + write.
            with open(filepath, 'wb') as f:
                half_write(f, obj)

        from mmengine.fileio.backends import LocalBackend
        torch.save = half_save
        LocalBackend.put = half_put


@HOOKS.register_module()
class LossRecorderHook(Hook):
    """Record every rank's per-iteration training loss (and the batch's
    ``sample_idx``) to ``out_dir/loss_rank<r>.json``.

    Args:
        out_dir (str): Where to write.
    """

    priority = 'LOWEST'

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.records = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        loss = (outputs or {}).get('loss')
        idx = [ds.metainfo.get('sample_idx')
               for ds in (data_batch or {}).get('data_samples', [])]
        self.records.append(
            dict(iter=runner.iter + 1,
                 loss=None if loss is None else float(loss),
                 sample_idx=idx))

    def after_train(self, runner) -> None:
        rank, world = get_dist_info()
        os.makedirs(self.out_dir, exist_ok=True)
        with open(osp.join(self.out_dir, f'loss_rank{rank}.json'), 'w') as f:
            json.dump(dict(rank=rank, world_size=world,
                           records=self.records), f)


@HOOKS.register_module()
class ReseedHook(Hook):
    """Re-seed Python, NumPy and torch before training starts (after the
    model was initialised), so that only the draws made during training
    change.

    Args:
        seed (int): The new seed.
    """

    priority = 'HIGHEST'

    def __init__(self, seed: int):
        self.seed = seed

    def before_train(self, runner) -> None:
        from mmengine.runner import set_random_seed
        set_random_seed(self.seed + get_dist_info()[0])
