"""Make mmpretrain's ``SwitchRecipeHook`` work with model-aware augments.

``SwitchRecipeHook`` (e.g. "turn mixing off for the last N epochs", or
"switch from MergeMix to Mixup at epoch E") builds a new
``RandomBatchAugment`` and assigns it to the data preprocessor. Augments such
as MergeMix need the model, so after every switch we bind the new augments
to the classifier, exactly as :class:`MergeMixClassifier` does at build time.
The hook re-applies the switches of past epochs on ``--resume`` by itself, so
the switch holds across resumption.

The ``batch_augments`` of its schedule also go through
:func:`~mergemix_mm.models.classifiers.normalize_batch_augments` first, as
the classifier's ``train_cfg`` does: the same shorthands (one augment dict,
a list) and the same checks (an error naming a bad ``alpha`` of mmpretrain's
Mixup / CutMix / ResizeMix instead of a bare ``AssertionError``).
"""
from mmengine.runner import EpochBasedTrainLoop
from mmpretrain.engine.hooks import SwitchRecipeHook

from ..models.batch_augments.base import bind_model_aware_augments
from ..models.classifiers.mergemix_classifier import (
    bind_classifier_augments, normalize_batch_augments)

__all__ = ['bind_model_aware_augments', 'patch_switch_recipe_hook']


def _normalized_schedule(schedule) -> list:
    """A copy of ``schedule`` whose ``batch_augments`` configs are in
    mmpretrain's ``dict(augments=..., probs=...)`` form (``None`` for no
    augment); built augment objects are kept."""
    out = []
    for recipe in schedule:
        if isinstance(recipe, dict) and isinstance(
                recipe.get('batch_augments'), (dict, list, tuple)):
            # normalize_batch_augments works on a copy of its input
            recipe = dict(recipe)
            recipe['batch_augments'] = normalize_batch_augments(
                recipe['batch_augments'])
        out.append(recipe)
    return out


def _check_epoch_loop(hook, runner) -> None:
    """Refuse a schedule that an iteration-based loop would never apply.

    ``IterBasedTrainLoop`` runs ``before_train_epoch`` once, as epoch 1, so
    only ``action_epoch=1`` entries would take effect and the others would
    be ignored without a word.
    """
    later = sorted(e for e in hook.schedule if e > 1)
    train_loop = getattr(runner, 'train_loop', None)
    if later and train_loop is not None and \
            not isinstance(train_loop, EpochBasedTrainLoop):
        raise ValueError(
            f'SwitchRecipeHook: action_epoch={later[0]} can never be reached '
            f'in an iteration-based training loop '
            f'({type(train_loop).__name__} runs as one epoch); use '
            "train_cfg=dict(by_epoch=True, ...) or switch at epoch 1 only.")


def patch_switch_recipe_hook() -> None:
    """Wrap ``SwitchRecipeHook.__init__``, ``before_train`` and
    ``_switch_batch_augments`` (idempotent)."""
    init = SwitchRecipeHook.__init__
    if not getattr(init, '_normalizes_augments', False):

        def __init__(self, schedule):
            init(self, _normalized_schedule(schedule))

        __init__._normalizes_augments = True
        SwitchRecipeHook.__init__ = __init__
    before_train = SwitchRecipeHook.before_train
    if not getattr(before_train, '_checks_loop', False):

        def checked_before_train(self, runner):
            _check_epoch_loop(self, runner)
            before_train(self, runner)

        checked_before_train._checks_loop = True
        SwitchRecipeHook.before_train = checked_before_train
    original = SwitchRecipeHook._switch_batch_augments
    if getattr(original, '_binds_augments', False):
        return

    def _switch_batch_augments(runner, batch_augments):
        original(runner, batch_augments)
        # as at build time: records only for MergeMixClassifier, and a
        # re-scoring augment (TransMix) refused under a plain classifier
        bind_classifier_augments(runner.model)

    _switch_batch_augments._binds_augments = True
    SwitchRecipeHook._switch_batch_augments = staticmethod(
        _switch_batch_augments)


patch_switch_recipe_hook()
