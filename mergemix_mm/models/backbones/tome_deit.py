"""Distilled DeiT with token merging (ToMe)."""
from typing import Optional

from mmpretrain.models.backbones import DistilledVisionTransformer
from mmpretrain.registry import MODELS

from ..tome.schedule import RType
from .tome_vit import ToMeVisionTransformer

__all__ = ['ToMeDistilledVisionTransformer']


@MODELS.register_module()
class ToMeDistilledVisionTransformer(ToMeVisionTransformer,
                                     DistilledVisionTransformer):
    """Distilled DeiT with token merging.

    The class and distillation tokens are both protected (never merged, never
    merged into). Arguments as :class:`ToMeVisionTransformer`; ``arch``
    defaults to ``'deit-base'`` as in ``DistilledVisionTransformer``.
    """

    def __init__(self,
                 arch='deit-base',
                 *args,
                 merge_num: int = 0,
                 tome_r: Optional[RType] = None,
                 merge_inflect: float = -0.5,
                 test_merge_num: Optional[int] = None,
                 test_tome_r: Optional[RType] = None,
                 prop_attn: bool = False,
                 schedule_compat: Optional[str] = None,
                 **kwargs) -> None:
        super().__init__(
            arch,
            *args,
            merge_num=merge_num,
            tome_r=tome_r,
            merge_inflect=merge_inflect,
            test_merge_num=test_merge_num,
            test_tome_r=test_tome_r,
            prop_attn=prop_attn,
            schedule_compat=schedule_compat,
            **kwargs)
