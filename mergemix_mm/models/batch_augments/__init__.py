from .mergemix import (MergeMix, mergemix_token_scores, rescale_lam,
                       topk_keep_mask)
from .base import (MixRecord, ModelAwareMixin, bind_model_aware_augments,
                   check_batch, derangement, mix_scores, model_aware_augments)

__all__ = [
    'MergeMix', 'mergemix_token_scores', 'rescale_lam', 'topk_keep_mask',
    'MixRecord', 'ModelAwareMixin', 'check_batch', 'derangement', 'mix_scores',
    'bind_model_aware_augments', 'model_aware_augments'
]

# Paper baselines (issue 8).
from .attentive_cutmix import AttentiveCutMix  # noqa: E402
from .fmix import FMix  # noqa: E402
from .gridmix import GridMix  # noqa: E402
from .mix_plan import PlannedMix  # noqa: E402
from .mixpro import MixPro  # noqa: E402
from .resizemix import ResizeMixTau  # noqa: E402
from .saliencymix import SaliencyMix, spectral_residual_saliency  # noqa: E402
from .smmix import SMMix  # noqa: E402
from .smoothmix import SmoothMix  # noqa: E402
from .tdattenmix import TdAttenMix  # noqa: E402
from .tokenmix import TokenMix  # noqa: E402
from .transmix import TransMix  # noqa: E402

__all__ += [
    'AttentiveCutMix', 'FMix', 'GridMix', 'PlannedMix', 'MixPro',
    'ResizeMixTau', 'SaliencyMix', 'spectral_residual_saliency', 'SMMix',
    'SmoothMix', 'TdAttenMix', 'TokenMix', 'TransMix'
]
