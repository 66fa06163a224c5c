from .mix_label_head import MixLabelClsHead

__all__ = ['MixLabelClsHead']
