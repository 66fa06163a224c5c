from .mergemix_classifier import (MergeMixClassifier, bind_classifier_augments,
                                  normalize_batch_augments)

__all__ = [
    'MergeMixClassifier', 'normalize_batch_augments',
    'bind_classifier_augments'
]
