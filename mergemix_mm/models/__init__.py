from . import backbones, batch_augments, classifiers, heads, losses, tome  # noqa: F401

__all__ = [
    'backbones', 'batch_augments', 'classifiers', 'heads', 'losses', 'tome'
]
