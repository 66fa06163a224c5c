from .mixed_label_ce import MixedLabelCrossEntropyLoss, smooth_targets

__all__ = ['MixedLabelCrossEntropyLoss', 'smooth_targets']
