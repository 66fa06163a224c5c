from .base import MixRecord, ModelAwareMixin, check_batch, derangement, mix_scores

__all__ = ['MixRecord', 'ModelAwareMixin', 'check_batch', 'derangement', 'mix_scores']
