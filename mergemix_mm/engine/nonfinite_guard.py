"""``NonFiniteGuardHook``: stop (or skip) a training step whose loss or inputs
are NaN/Inf, and say which iteration and which samples it was.

Without it a NaN loss is back-propagated, the optimizer writes NaN into every
weight, and the run goes on for days logging ``loss: nan``. The hook wraps the
model's ``train_step`` for the duration of training:

* **inputs**: floating-point ``inputs`` of the batch (before the data
  preprocessor) must be finite;
* **loss**: every loss handed to ``optim_wrapper.backward`` must be finite
  (this covers mmengine's ``update_params`` path, DDP, AMP and
  :class:`~mergemix_mm.models.classifiers.MergeMixClassifier`'s sequential
  main/auxiliary backward);
* **gradients**: before every optimizer step the gradients must be finite
  too (a finite loss can still have an infinite gradient, e.g. ``sqrt`` at
  0, and gradient clipping would then turn every gradient into NaN). Not
  checked under ``AmpOptimWrapper``, whose loss scaler already skips steps
  with non-finite (scaled) gradients and lowers its scale.

``action='raise'`` (default) raises :class:`NonFiniteError` naming the
iteration, epoch, the loss terms and the dataset indices (``sample_idx``,
and ``img_path`` where the pipeline packs it) of the batch. ``action='skip'``
drops the batch instead: no backward and no optimizer step at that iteration
(with gradient accumulation the batch counts as a step of the window, and if
the window's update falls on it, the window's gradients are discarded), a
warning with the same details and a running count; ``max_skipped`` /
``max_consecutive_skips`` stop a run that keeps producing non-finite losses.
Under distributed training the skip decision is all-reduced so that every
rank skips the same step (otherwise DDP would hang).
"""
import logging
from typing import Any, Dict, List, Optional

import torch
import torch.distributed as torch_dist
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper
from mmengine.runner import IterBasedTrainLoop
from mmpretrain.registry import HOOKS

from ..utils.checks import check_bool

__all__ = ['NonFiniteError', 'NonFiniteGuardHook', 'batch_sample_info']

_ACTIONS = ('raise', 'skip')
_MISSING = object()


class NonFiniteError(FloatingPointError):
    """A training batch produced a NaN/Inf loss or contained NaN/Inf inputs.

    Attributes:
        iteration (int): 1-based global iteration (as in the training log).
        sample_idx (list): Dataset indices of the batch's samples.
    """

    def __init__(self, message: str, iteration: int, sample_idx: list):
        super().__init__(message)
        self.iteration = iteration
        self.sample_idx = sample_idx


def batch_sample_info(data: Any) -> Dict[str, list]:
    """``sample_idx`` (and ``img_path``) of a batch's data samples.

    Args:
        data (dict | list | tuple): A batch as the dataloader yields it.

    Returns:
        dict: ``sample_idx`` and ``img_path`` lists (missing values are None;
        empty lists when the batch carries no data samples).
    """
    samples = data.get('data_samples') if isinstance(data, dict) else None
    info = dict(sample_idx=[], img_path=[])
    for ds in samples or []:
        meta = getattr(ds, 'metainfo', None) or {}
        info['sample_idx'].append(meta.get('sample_idx'))
        info['img_path'].append(meta.get('img_path'))
    return info


def _floating_tensors(inputs: Any) -> List[torch.Tensor]:
    if isinstance(inputs, torch.Tensor):
        return [inputs] if inputs.is_floating_point() else []
    if isinstance(inputs, (list, tuple)):
        return [t for item in inputs for t in _floating_tensors(item)]
    if isinstance(inputs, dict):
        return [t for v in inputs.values() for t in _floating_tensors(v)]
    return []


def _bad_input_positions(inputs: Any) -> List[int]:
    """Batch positions whose floating-point inputs are not finite."""
    if isinstance(inputs, torch.Tensor):
        if not inputs.is_floating_point() or inputs.ndim == 0:
            return []
        bad = ~torch.isfinite(inputs.reshape(inputs.shape[0], -1)).all(1)
        return bad.nonzero().flatten().tolist()
    if isinstance(inputs, (list, tuple)):
        return [
            i for i, item in enumerate(inputs)
            if any(not bool(torch.isfinite(t).all())
                   for t in _floating_tensors(item))
        ]
    return []


def _any_rank(flag: bool) -> bool:
    """True if ``flag`` is True on any rank (all ranks must call this)."""
    _, world_size = get_dist_info()
    if world_size <= 1:
        return flag
    device = 'cuda' if torch_dist.get_backend() == 'nccl' else 'cpu'
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    torch_dist.all_reduce(value, op=torch_dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def _non_finite_grads(model: Any, optim_wrapper: Any) -> List[str]:
    """Names of the parameters (of ``optim_wrapper``'s optimizer) whose
    gradient holds a NaN/Inf; empty when every gradient is finite."""
    params = [
        p for group in optim_wrapper.optimizer.param_groups
        for p in group['params'] if p.grad is not None
    ]
    if not params:
        return []
    device = params[0].grad.device
    flags = torch.stack(
        [torch.isfinite(p.grad).all().to(device) for p in params])
    if bool(flags.all()):  # one synchronisation in the common case
        return []
    names = {id(p): n for n, p in model.named_parameters()}
    return [
        names.get(id(p), '<unnamed>')
        for p, ok in zip(params, flags.tolist()) if not ok
    ]


#: Key of the skip counts in a checkpoint's ``meta``.
_CKPT_KEY = 'nonfinite_guard'


@HOOKS.register_module()
class NonFiniteGuardHook(Hook):
    """Guard training against NaN/Inf losses and inputs.

    Registered by default in ``configs/_base_/default_runtime.py``
    (``default_hooks.nonfinite_guard``). To skip bad steps instead of
    stopping, set ``default_hooks.nonfinite_guard.action='skip'``; to turn
    the guard off, ``default_hooks.nonfinite_guard.enable=False`` (mmengine
    does not accept None for a default hook it does not know).

    Args:
        action (str): ``'raise'`` stops training with
            :class:`NonFiniteError`; ``'skip'`` skips the step and logs it.
            Defaults to ``'raise'``.
        check_inputs (bool): Also check floating-point batch inputs.
            Defaults to True.
        max_skipped (int, optional): With ``'skip'``, raise once more than
            this many steps were skipped in total (the counts are saved in
            checkpoints and carried over by ``--resume``). None: no limit.
            Defaults to None.
        max_consecutive_skips (int, optional): With ``'skip'``, raise once
            more than this many steps in a row were skipped (the model has
            most likely diverged). None: no limit. Defaults to 10.
        enable (bool): Whether the guard is active. Defaults to True.
    """

    priority = 'VERY_HIGH'

    def __init__(self,
                 action: str = 'raise',
                 check_inputs: bool = True,
                 max_skipped: Optional[int] = None,
                 max_consecutive_skips: Optional[int] = 10,
                 enable: bool = True) -> None:
        if action not in _ACTIONS:
            raise ValueError(
                f'NonFiniteGuardHook: action={action!r} must be one of '
                f'{_ACTIONS}.')
        for name, value in (('check_inputs', check_inputs), ('enable',
                                                             enable)):
            check_bool('NonFiniteGuardHook', name, value)
        for name, value in (('max_skipped', max_skipped),
                            ('max_consecutive_skips', max_consecutive_skips)):
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, int)
                                      or value < 0):
                raise ValueError(
                    f'NonFiniteGuardHook: {name}={value!r} must be None or '
                    'an int >= 0.')
        self.action = action
        self.check_inputs = check_inputs
        self.enable = enable
        self.max_skipped = max_skipped
        self.max_consecutive_skips = max_consecutive_skips
        self.num_skipped = 0
        self.consecutive = 0
        self._model = None

    # ------------------------------------------------------------------
    def before_train(self, runner) -> None:
        if not self.enable:
            return
        model = runner.model
        original = model.train_step
        if getattr(original, '_nonfinite_guarded', False):
            return  # already wrapped (train() called again)
        hook = self

        def train_step(data, optim_wrapper):
            return hook._guarded_step(runner, original, data, optim_wrapper)

        train_step._nonfinite_guarded = True
        model.train_step = train_step
        self._model = model

    def after_train(self, runner) -> None:
        if self._model is not None:
            self._model.__dict__.pop('train_step', None)
            self._model = None

    # The skip counts are part of the run: ``max_skipped`` counts "in
    # total", also across a ``--resume``.
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.enable:
            checkpoint.setdefault('meta', {})[_CKPT_KEY] = dict(
                num_skipped=self.num_skipped, consecutive=self.consecutive)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not self.enable or not getattr(runner, '_resume', False):
            return  # load_from (fine-tuning, testing) starts a new count
        counts = checkpoint.get('meta', {}).get(_CKPT_KEY)
        if counts:
            self.num_skipped = int(counts['num_skipped'])
            self.consecutive = int(counts['consecutive'])

    # ------------------------------------------------------------------
    def _where(self, runner, data) -> Dict[str, Any]:
        info = batch_sample_info(data)
        where = dict(
            iteration=runner.iter + 1,
            epoch=runner.epoch + 1,
            sample_idx=info['sample_idx'])
        paths = [p for p in info['img_path'] if p is not None]
        epoch = '' if isinstance(
            getattr(runner, 'train_loop', None),
            IterBasedTrainLoop) else f' (epoch {runner.epoch + 1})'
        where['text'] = (f'iteration {runner.iter + 1}{epoch}; batch '
                         f'sample_idx={info["sample_idx"]}')
        if paths:
            where['text'] += f', img_path={info["img_path"]}'
        return where

    def _fail_or_skip(self, runner, where: dict, what: str) -> None:
        """Raise, or count a skipped step (raising past the limits)."""
        if self.action == 'raise':
            raise NonFiniteError(
                f'Non-finite {what} at {where["text"]}. Training stopped '
                'before the optimizer step, so the weights are still finite. '
                'Lower the learning rate, check these samples, or set '
                "default_hooks.nonfinite_guard.action='skip' to skip such "
                'steps.', where['iteration'], where['sample_idx'])
        self.num_skipped += 1
        self.consecutive += 1
        print_log(
            f'Skipped training step: non-finite {what} at {where["text"]} '
            f'({self.num_skipped} step(s) skipped so far, '
            f'{self.consecutive} in a row).',
            logger='current',
            level=logging.WARNING)
        limits = (('max_skipped', self.max_skipped, self.num_skipped),
                  ('max_consecutive_skips', self.max_consecutive_skips,
                   self.consecutive))
        for name, limit, count in limits:
            if limit is not None and count > limit:
                raise NonFiniteError(
                    f'Non-finite {what} at {where["text"]}: {count} skipped '
                    f'steps exceed NonFiniteGuardHook {name}={limit}; the '
                    'run has most likely diverged.', where['iteration'],
                    where['sample_idx'])

    def _guarded_step(self, runner, original, data, optim_wrapper):
        if self.check_inputs and isinstance(data, dict):
            bad = _bad_input_positions(data.get('inputs'))
            flag = bool(bad)
            if self.action == 'skip':
                flag = _any_rank(flag)
            if flag:
                where = self._where(runner, data)
                rows = (f' at batch positions {bad}' if bad else
                        ' on another rank')
                self._fail_or_skip(runner, where, f'inputs (NaN/Inf{rows})')
                # Skipped without a forward: count the batch as a step of
                # the accumulation window, as a skipped loss is, and discard
                # the window's gradients if its update falls here.
                optim_wrapper._inner_count += 1
                if optim_wrapper.should_update():
                    optim_wrapper.zero_grad()
                return {}

        state: Dict[str, Any] = dict(bad=None, grads=None)
        backward, step = optim_wrapper.backward, optim_wrapper.step
        check_grads = not isinstance(optim_wrapper, AmpOptimWrapper)

        def guarded_backward(loss: torch.Tensor, **kwargs):
            if state['bad'] is not None:
                # An earlier loss of this step was bad; counted like the
                # skipped backward below.
                optim_wrapper._inner_count += 1
                return None
            finite = bool(torch.isfinite(loss.detach()).all())
            if self.action == 'skip':
                finite = not _any_rank(not finite)
            if not finite:
                # No backward: the weights and optimizer state stay finite.
                # (Raising happens after train_step, with the loss terms.)
                state['bad'] = loss.detach().float().flatten().tolist()[:4]
                # Count the call as mmengine's backward does, so gradient
                # accumulation (and MergeMixClassifier's two-backward step)
                # keep their one-count-per-iteration bookkeeping.
                optim_wrapper._inner_count += 1
                return None
            return backward(loss, **kwargs)

        def guarded_step(**kwargs):
            if state['bad'] is None and check_grads:
                bad = _non_finite_grads(runner.model, optim_wrapper)
                flag = bool(bad)
                if self.action == 'skip':
                    flag = _any_rank(flag)
                if flag:
                    state['bad'] = state['grads'] = bad or ['on another rank']
            if state['bad'] is not None:
                optim_wrapper.zero_grad()
                return None
            return step(**kwargs)

        # Instance attributes, restored exactly afterwards (mmengine's
        # parameter schedulers keep their own wrapper of ``step`` there).
        saved = {k: optim_wrapper.__dict__.get(k, _MISSING)
                 for k in ('backward', 'step')}
        optim_wrapper.backward = guarded_backward
        optim_wrapper.step = guarded_step
        try:
            log_vars = original(data, optim_wrapper)
        finally:
            for key, value in saved.items():
                if value is _MISSING:
                    optim_wrapper.__dict__.pop(key, None)
                else:
                    optim_wrapper.__dict__[key] = value
        if state['bad'] is not None:
            where = self._where(runner, data)
            terms = {
                k: float(v.detach()) for k, v in (log_vars or {}).items()
                if isinstance(v, torch.Tensor) and v.numel() == 1
            }
            if state['grads'] is not None:
                names = state['grads']
                more = f' and {len(names) - 3} more' if len(names) > 3 else ''
                what = (f'gradients (of {", ".join(names[:3])}{more}; the '
                        f'loss was finite: {terms})')
            else:
                what = f'loss {terms or state["bad"]}'
            self._fail_or_skip(runner, where, what)
            return {}
        self.consecutive = 0
        return log_vars
