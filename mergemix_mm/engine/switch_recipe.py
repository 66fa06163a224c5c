"""Make mmpretrain's ``SwitchRecipeHook`` work with model-aware augments.

``SwitchRecipeHook`` (e.g. "turn mixing off for the last N epochs", or
"switch from MergeMix to Mixup at epoch E") builds a new
``RandomBatchAugment`` and assigns it to the data preprocessor. Augments such
as MergeMix need the model, so after every switch we bind the new augments
to the classifier, exactly as :class:`MergeMixClassifier` does at build time.
The hook re-applies the switches of past epochs on ``--resume`` by itself, so
the switch holds across resumption.
"""
from mmpretrain.engine.hooks import SwitchRecipeHook

from ..models.batch_augments.base import bind_model_aware_augments

__all__ = ['bind_model_aware_augments', 'patch_switch_recipe_hook']


def patch_switch_recipe_hook() -> None:
    """Wrap ``SwitchRecipeHook._switch_batch_augments`` (idempotent)."""
    original = SwitchRecipeHook._switch_batch_augments
    if getattr(original, '_binds_augments', False):
        return

    def _switch_batch_augments(runner, batch_augments):
        original(runner, batch_augments)
        bind_model_aware_augments(runner.model)

    _switch_batch_augments._binds_augments = True
    SwitchRecipeHook._switch_batch_augments = staticmethod(
        _switch_batch_augments)


patch_switch_recipe_hook()
