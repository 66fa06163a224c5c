"""Change a ToMe backbone's merge schedule during training.

``SwitchRecipeHook`` switches batch augments, pipelines and losses, but the
backbone's own merge schedule (used by the classifying forwards when
``tome_in_mix=False``, and at test time) is fixed at construction.
:class:`ToMeScheduleHook` replaces it at given epochs, e.g. to stop merging
for the last epochs::

    custom_hooks = [
        dict(type='ToMeScheduleHook',
             schedule=[dict(action_epoch=181, merge_num=0)]),
    ]

Each entry sets the schedules as the backbone's constructor builds them from
``merge_num`` / ``tome_r`` / ``test_merge_num`` / ``test_tome_r`` (the test
schedule is the train one unless a ``test_*`` key is given). Every entry is
checked against the backbone before the first epoch, so a schedule that does
not fit the token count fails at start-up, not hours later. On ``--resume``
the last entry whose epoch has passed is applied again (the schedule is not
part of the checkpoint). MergeMix's own no-grad attention pass uses the
augment's ``merge_num`` and is switched with ``SwitchRecipeHook``.
"""
import copy
from collections import OrderedDict
from typing import Optional, Sequence

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS

__all__ = ['ToMeScheduleHook']

_KEYS = ('merge_num', 'tome_r', 'test_merge_num', 'test_tome_r')


@HOOKS.register_module()
class ToMeScheduleHook(Hook):
    """Replace the ToMe backbone's merge schedules at given epochs.

    Args:
        schedule (Sequence[dict]): Entries with ``action_epoch`` (int >= 1,
            the 1-based epoch from whose start the entry holds, as in
            mmpretrain's ``SwitchRecipeHook``) and at least one of
            ``merge_num``, ``tome_r``, ``test_merge_num``, ``test_tome_r``.

    Raises:
        ValueError: For an empty schedule, a repeated or invalid
            ``action_epoch``, or an entry without schedule keys or with
            other keys.
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
            if unknown or not entry:
                raise ValueError(
                    f'ToMeScheduleHook: the entry of action_epoch={epoch} '
                    f'must set some of {list(_KEYS)}'
                    + (f', not {unknown}' if unknown else ''))
            entries[epoch] = entry
        self.schedule = OrderedDict(sorted(entries.items()))

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
        return backbone

    def _apply(self, runner, epoch: int, why: str) -> None:
        backbone = self._backbone(runner)
        backbone.set_merge_schedule(**self.schedule[epoch])
        runner.logger.info(
            f'ToMeScheduleHook: {self.schedule[epoch]} {why}: train r '
            f'{backbone.train_r_list}, test r {backbone.test_r_list}')

    def before_train(self, runner) -> None:
        """Check every entry against the backbone; on resume, apply the last
        entry whose epoch has started before the resumed one."""
        backbone = self._backbone(runner)
        for epoch, entry in self.schedule.items():
            try:
                backbone.check_merge_schedule(**entry)
            except ValueError as err:
                raise ValueError(f'ToMeScheduleHook, action_epoch={epoch}: '
                                 f'{err}') from err
        passed: Optional[int] = None
        for epoch in self.schedule:
            if epoch <= runner.epoch:
                passed = epoch
        if passed is not None:
            self._apply(runner, passed, f'(resumed at epoch {runner.epoch + 1}'
                        f', from epoch {passed})')

    def before_train_epoch(self, runner) -> None:
        """Apply the entry of the epoch that starts now, if any."""
        epoch = runner.epoch + 1
        if epoch in self.schedule:
            self._apply(runner, epoch, f'at epoch {epoch}')
