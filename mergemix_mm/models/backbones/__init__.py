from .tome_deit import ToMeDistilledVisionTransformer
from .tome_timm import ToMeTimmViT
from .tome_vit import ToMeVisionTransformer

__all__ = [
    'ToMeVisionTransformer', 'ToMeDistilledVisionTransformer', 'ToMeTimmViT'
]
