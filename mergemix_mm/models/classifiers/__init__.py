from .mergemix_classifier import MergeMixClassifier, normalize_batch_augments

__all__ = ['MergeMixClassifier', 'normalize_batch_augments']
