"""Change a ToMe backbone's merge schedule during training.

``SwitchRecipeHook`` switches batch augments, pipelines and losses, but the
backbone's own merge schedule is fixed at construction. It is what the
classifying forwards (training and evaluation) merge with under
``MergeMixClassifier(tome_in_mix=False)`` or a plain ``ImageClassifier``;
with ``tome_in_mix=True`` (the default) they never merge, and the hook
refuses to run. :class:`ToMeScheduleHook` replaces the schedule at given
epochs, e.g. to stop merging for the last epochs::

    custom_hooks = [
        dict(type='ToMeScheduleHook',
             schedule=[dict(action_epoch=181, merge_num=0)]),
    ]

Each entry sets the schedules as the backbone's constructor builds them from
``merge_num`` or ``tome_r`` (one of them is required) and optionally
``test_merge_num`` / ``test_tome_r`` (the test schedule is the train one
unless a ``test_*`` key is given). Every entry is checked against the
backbone before the first epoch, so a schedule that does not fit the token
count fails at start-up, not hours later. The schedule is not part of the
checkpoint: on ``--resume`` the last entry whose epoch has passed is applied
again, and an evaluation-only run (``tools/test.py``) applies the last entry
up to the checkpoint's epoch, so it evaluates as the training's validation
did. The hook needs an epoch-based training loop. MergeMix's own no-grad
attention pass uses the augment's ``merge_num`` and is switched with
``SwitchRecipeHook``.
"""
import copy
from collections import OrderedDict
from typing import Optional, Sequence

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop
from mmpretrain.registry import HOOKS

__all__ = ['ToMeScheduleHook']

_KEYS = ('merge_num', 'tome_r', 'test_merge_num', 'test_tome_r')


@HOOKS.register_module()
class ToMeScheduleHook(Hook):
    """Replace the ToMe backbone's merge schedules at given epochs.

    Args:
        schedule (Sequence[dict]): Entries with ``action_epoch`` (int >= 1,
            the 1-based epoch from whose start the entry holds, as in
            mmpretrain's ``SwitchRecipeHook``), ``merge_num`` or ``tome_r``,
            and optionally ``test_merge_num`` / ``test_tome_r``.

    Raises:
        ValueError: For an empty schedule, a repeated or invalid
            ``action_epoch``, or an entry without ``merge_num`` / ``tome_r``
            or with other keys.
    """

    priority = 'NORMAL'

    def __init__(self, schedule: Sequence[dict]) -> None:
        if isinstance(schedule, dict) or not schedule:
            raise ValueError('ToMeScheduleHook: schedule must be a non-empty '
                             f'list of dicts, got {schedule!r}')
        entries = {}
        for entry in schedule:
            if not isinstance(entry, dict):
                raise ValueError('ToMeScheduleHook: every schedule entry must '
                                 f'be a dict, got {entry!r}')
            entry = copy.deepcopy(dict(entry))
            epoch = entry.pop('action_epoch', None)
            if isinstance(epoch, bool) or not isinstance(epoch,
                                                         int) or epoch < 1:
                raise ValueError(
                    f'ToMeScheduleHook: action_epoch={epoch!r} must be an '
                    'int >= 1 (the 1-based epoch the entry starts at)')
            if epoch in entries:
                raise ValueError(f'ToMeScheduleHook: action_epoch={epoch} '
                                 'is repeated')
            unknown = sorted(set(entry) - set(_KEYS))
            if unknown:
                raise ValueError(
                    f'ToMeScheduleHook: the entry of action_epoch={epoch} '
                    f'has {unknown}; its keys are {list(_KEYS)}')
            if 'merge_num' not in entry and 'tome_r' not in entry:
                # the constructor's default merge_num=0 would silently stop
                # the training's merging
                raise ValueError(
                    f'ToMeScheduleHook: the entry of action_epoch={epoch} '
                    'must set merge_num or tome_r (the training schedule)')
            entries[epoch] = entry
        self.schedule = OrderedDict(sorted(entries.items()))
        self._loaded_epoch: Optional[int] = None

    @staticmethod
    def _backbone(runner):
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        backbone = getattr(model, 'backbone', None)
        if not hasattr(backbone, 'set_merge_schedule'):
            raise ValueError(
                'ToMeScheduleHook needs a ToMe backbone (ToMeVisionTransformer'
                ', ToMeDistilledVisionTransformer or ToMeTimmViT), got '
                f'{type(backbone).__name__}')
        if getattr(model, 'tome_in_mix', False):
            raise ValueError(
                'ToMeScheduleHook has no effect with MergeMixClassifier('
                'tome_in_mix=True): its classifying forwards never merge. Set '
                'tome_in_mix=False (they then merge with the backbone '
                'schedule), or remove the hook')
        return backbone

    def _last_entry_up_to(self, epoch: int) -> Optional[int]:
        return max((e for e in self.schedule if e <= epoch), default=None)

    def _apply(self, runner, epoch: int, why: str) -> None:
        backbone = self._backbone(runner)
        backbone.set_merge_schedule(**self.schedule[epoch])
        runner.logger.info(
            f'ToMeScheduleHook: {self.schedule[epoch]} {why}: train r '
            f'{backbone.train_r_list}, test r {backbone.test_r_list}')

    def before_train(self, runner) -> None:
        """Check every entry against the backbone; on resume, apply the last
        entry whose epoch has started before the resumed one."""
        if not isinstance(runner.train_loop, EpochBasedTrainLoop):
            raise ValueError(
                'ToMeScheduleHook follows epochs and needs an epoch-based '
                f'training loop, got {type(runner.train_loop).__name__}')
        backbone = self._backbone(runner)
        for epoch, entry in self.schedule.items():
            try:
                backbone.check_merge_schedule(**entry)
            except ValueError as err:
                raise ValueError(f'ToMeScheduleHook, action_epoch={epoch}: '
                                 f'{err}') from err
        passed = self._last_entry_up_to(runner.epoch)
        if passed is not None:
            self._apply(runner, passed, f'(resumed at epoch {runner.epoch + 1}'
                        f', from epoch {passed})')

    def before_train_epoch(self, runner) -> None:
        """Apply the entry of the epoch that starts now, if any."""
        epoch = runner.epoch + 1
        if epoch in self.schedule:
            self._apply(runner, epoch, f'at epoch {epoch}')

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Remember the epoch the loaded checkpoint was saved after."""
        epoch = (checkpoint.get('meta') or {}).get('epoch')
        self._loaded_epoch = epoch if isinstance(epoch, int) else None

    def before_test(self, runner) -> None:
        """Evaluation-only runs: the schedule of the checkpoint's epoch."""
        if self._loaded_epoch is None:
            return
        passed = self._last_entry_up_to(self._loaded_epoch)
        if passed is not None:
            self._apply(runner, passed, f'(checkpoint of epoch '
                        f'{self._loaded_epoch}, from epoch {passed})')
