"""``RNGStateHook``: resume with the random number generators where they were.

mmengine's ``--resume`` restores the weights, optimizer, schedulers, message
hub and (through ``randomness.seed`` and ``DistSamplerSeedHook``) the data
order of each epoch, but not the *global* random number generators. After a
resume they restart from the seed, so everything drawn from them in the
following epochs differs from an uninterrupted run: the mixing ratio
:math:`\\lambda` (NumPy), partner permutations and drop-path masks (torch),
and the random crops of the data pipeline when ``num_workers=0`` (NumPy).
The run is still valid, but not the same run.

This hook stores the Python, NumPy, torch (and CUDA) generator states of
every rank in each checkpoint and puts them back when training resumes from
it, and it makes validation RNG-neutral (the generators are restored after
each validation), because mmengine saves the checkpoint *before* validating:
without that, an uninterrupted run would see the validation dataloader's seed
draw and a resumed one would not. With both, a run resumed from a checkpoint
continues with the exact random stream of the uninterrupted run (see
``docs/reliability.md`` for the measurement).

Not restored: RNG state inside dataloader *worker processes* (mmengine seeds
each worker when it starts; with ``persistent_workers=False`` that happens
identically every epoch, so there is nothing to carry over, but persistent
workers restart their stream after a resume) and third-party generators with
their own state.
"""
import logging
import random
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop
from mmpretrain.registry import HOOKS

from ..utils.checks import check_bool

__all__ = ['RNGStateHook', 'get_rng_state', 'set_rng_state']

_KEY = 'rng_states'


def get_rng_state() -> Dict[str, Any]:
    """Python, NumPy, torch and (if initialised) CUDA generator states."""
    state = dict(
        python=random.getstate(),
        numpy=np.random.get_state(),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned.

    Raises:
        TypeError: If ``state`` is not such a dict.
    """
    if not isinstance(state, dict) or not {'python', 'numpy', 'torch'} <= set(
            state):
        raise TypeError(
            'set_rng_state: expected the dict of get_rng_state() with keys '
            f"'python', 'numpy', 'torch', got {type(state).__name__}.")
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    cuda = state.get('cuda')
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


class _RestoreBeforeFetch:
    """Wraps a dataloader iterator; restores the generator states right
    before its ``(num_skipped + 1)``-th ``next()``."""

    def __init__(self, iterator, num_skipped: int, state: Dict[str, Any]):
        self.iterator = iterator
        self.remaining = num_skipped
        self.state = state

    def __iter__(self):
        return self

    def __next__(self):
        if self.remaining == 0 and self.state is not None:
            set_rng_state(self.state)
            self.state = None
            print_log(
                'Restored the random generator states saved in the resumed '
                'checkpoint.',
                logger='current')
        self.remaining -= 1
        return next(self.iterator)

    def __getattr__(self, name):
        return getattr(self.iterator, name)


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the generators' states in checkpoints and restore them on resume.

    Registered by default in ``configs/_base_/default_runtime.py``
    (``default_hooks.rng_state``); ``default_hooks.rng_state.enable=False``
    turns it off (mmengine does not accept None for a default hook it does
    not know).

    Args:
        neutral_validation (bool): Restore the generators after every
            validation, so that validating (or not, or resuming right after
            the checkpoint that precedes validation) does not change the
            training's random stream. Defaults to True.
        enable (bool): Whether the hook does anything. Defaults to True.
    """

    # after_train_epoch must run before CheckpointHook (VERY_LOW) saves.
    priority = 'LOW'

    def __init__(self,
                 neutral_validation: bool = True,
                 enable: bool = True) -> None:
        for name, value in (('neutral_validation', neutral_validation),
                            ('enable', enable)):
            check_bool('RNGStateHook', name, value)
        self.neutral_validation = neutral_validation and enable
        self.enable = enable
        self._gathered: Optional[List[Dict[str, Any]]] = None
        self._gathered_at: Optional[int] = None
        self._to_restore: Optional[Dict[str, Any]] = None
        self._before_val: Optional[Dict[str, Any]] = None

    # -- saving --------------------------------------------------------
    def _gather(self, runner) -> None:
        """All ranks' states, collected before rank 0 saves (all ranks take
        part; ``Runner.save_checkpoint`` itself only runs on rank 0), stamped
        with the iteration count they belong to (validation, which is
        neutral, does not change it, so a best checkpoint saved after it
        uses the epoch's states)."""
        rank, world_size = get_dist_info()
        if world_size > 1:
            states = all_gather_object(get_rng_state())
            if rank == 0:
                self._gathered = states
                self._gathered_at = runner.iter

    def _will_save_iter_checkpoint(self, runner) -> bool:
        """Whether a CheckpointHook saves after this iteration, with the
        condition of ``CheckpointHook.after_train_iter`` (``save_begin``
        included)."""
        from mmengine.hooks import CheckpointHook
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook) and not hook.by_epoch:
                if hook.interval > 0 and self.every_n_train_iters(
                        runner, hook.interval, hook.save_begin):
                    return True
                if hook.save_last and self.is_last_train_iter(runner):
                    return True
        return False

    def after_train_epoch(self, runner) -> None:
        if self.enable:
            self._gather(runner)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        if self.enable and get_dist_info()[1] > 1 and \
                self._will_save_iter_checkpoint(runner):
            self._gather(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if not self.enable:
            return
        states = self._gathered
        world_size = get_dist_info()[1]
        if states is not None and self._gathered_at != runner.iter:
            # gathered for another save point: the other ranks' states
            # would be those of an earlier step, restored without a word
            print_log(
                'RNGStateHook: the random states of the other ranks were '
                f'gathered at iteration {self._gathered_at}, not at '
                f'{runner.iter} where this checkpoint is saved; only rank '
                "0's state is stored (a resume does not restore the "
                'others).',
                logger='current', level=logging.WARNING)
            states = None
        if states is None or len(states) != world_size:
            states = [get_rng_state()]
        else:
            states = list(states)
            states[0] = get_rng_state()  # rank 0's state at saving time
        checkpoint[_KEY] = states
        self._gathered = self._gathered_at = None

    # -- resuming ------------------------------------------------------
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not self.enable or not getattr(runner, '_resume', False):
            return  # load_from (fine-tuning, testing): keep the seed's stream
        states = checkpoint.get(_KEY)
        if states is None:
            print_log(
                'The checkpoint has no random generator states (saved '
                'without RNGStateHook); the resumed run draws different '
                'random numbers from an uninterrupted one.',
                logger='current')
            return
        rank, world_size = get_dist_info()
        if len(states) != world_size:
            print_log(
                f'The checkpoint holds random generator states of '
                f'{len(states)} rank(s) but this run has {world_size}; they '
                'are not restored.',
                logger='current')
            return
        self._to_restore = states[rank]

    def _restore(self, runner) -> None:
        if self._to_restore is not None:
            set_rng_state(self._to_restore)
            self._to_restore = None
            print_log(
                'Restored the random generator states saved in the resumed '
                'checkpoint.',
                logger='current')

    def before_train(self, runner) -> None:
        loop = runner.train_loop
        if self._to_restore is not None and isinstance(
                loop, IterBasedTrainLoop):
            # The loop first skips the already-trained batches (running
            # their pipeline, re-creating the dataloader iterator at epoch
            # ends: both draw random numbers), then fetches the next batch.
            # Restore right before that fetch.
            loop.dataloader_iterator = _RestoreBeforeFetch(
                loop.dataloader_iterator, runner.iter, self._to_restore)
            self._to_restore = None

    def before_train_epoch(self, runner) -> None:
        # Epoch-based loops draw the data of the epoch after this hook.
        if not isinstance(runner.train_loop, IterBasedTrainLoop):
            self._restore(runner)

    # -- validation ----------------------------------------------------
    def before_val(self, runner) -> None:
        if self.neutral_validation:
            self._before_val = get_rng_state()

    def after_val(self, runner) -> None:
        if self.neutral_validation and self._before_val is not None:
            set_rng_state(self._before_val)
            self._before_val = None
