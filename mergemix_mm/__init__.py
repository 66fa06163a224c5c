"""mergemix_mm: MergeMix (token-merge-guided mixup), an mmpretrain 1.x plugin.

Importing the package applies the small compatibility fixes in
:mod:`mergemix_mm.utils.compat` and registers every module into mmpretrain's
registries, so ``custom_imports=dict(imports=['mergemix_mm'])`` in a config is
all a user adds.
"""
from .version import __version__
from .utils import compat as _compat

_compat.apply_all()

from . import datasets, engine, models  # noqa: E402,F401

__all__ = ['__version__']
