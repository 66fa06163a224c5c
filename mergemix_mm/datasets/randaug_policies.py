"""The FixMatch-style RandAugment policy set used by the CIFAR-100 recipe.

OpenMixup's CIFAR-100 224 px configs (used by MergeMix) run RandAugment
(2 ops, magnitude 7, std 0.5) over the FixMatch operation set, which includes
an identity operation. mmpretrain has every operation except ``Identity``, so
it is registered here. ``configs/_base_/datasets/cifar100_bs100_224px.py``
spells the list out (configs cannot import Python objects);
:data:`FIXMATCH_RANDAUG_POLICIES` is the same list for use from Python and
tests.
"""
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS

__all__ = ['Identity', 'FIXMATCH_RANDAUG_POLICIES']


@TRANSFORMS.register_module()
class Identity(BaseTransform):
    """Return the results unchanged (the "identity" RandAugment operation)."""

    def transform(self, results: dict) -> dict:
        """Return ``results`` as is.

        Args:
            results (dict): Result dict.

        Returns:
            dict: The same dict.
        """
        return results


#: FixMatch RandAugment operations with the magnitude ranges of OpenMixup's
#: ``cifar100/sz224_randaug_bs100.py`` (ranges in mmpretrain's convention:
#: level 0 maps to the first value, ``total_level`` to the second).
FIXMATCH_RANDAUG_POLICIES = (
    dict(type='AutoContrast'),
    dict(type='Brightness', magnitude_range=(0.05, 0.95)),
    dict(type='ColorTransform', magnitude_range=(0.05, 0.95)),
    dict(type='Contrast', magnitude_range=(0.05, 0.95)),
    dict(type='Equalize'),
    dict(type='Identity'),
    dict(type='Posterize', magnitude_range=(4, 8)),
    dict(type='Rotate', magnitude_range=(0, 30)),
    dict(type='Sharpness', magnitude_range=(0.05, 0.95)),
    dict(type='Shear', magnitude_range=(0, 0.3), direction='horizontal'),
    dict(type='Shear', magnitude_range=(0, 0.3), direction='vertical'),
    dict(type='Solarize', magnitude_range=(256, 0)),
    dict(type='Translate', magnitude_range=(0, 0.3), direction='horizontal'),
    dict(type='Translate', magnitude_range=(0, 0.3), direction='vertical'),
)
