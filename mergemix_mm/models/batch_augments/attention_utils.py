"""Attention and saliency maps shared by the attention-guided baselines
(TransMix, MixPro, SMMix, TdAttenMix, TokenMix, Attentive-CutMix).

All maps are per patch, ``[B, h, w]`` on the backbone's patch grid. They are
read from the functional ToMe forward
(:func:`~mergemix_mm.models.tome.forward_with_attention`), so they work for
mmpretrain ``VisionTransformer`` / DeiT, ``ToMeVisionTransformer`` and timm
ViTs, with or without token merging.
"""
import contextlib
import copy
from typing import Iterator, Optional, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from ..tome import (ToMeOutput, check_cls_token, forward_with_attention,
                    vit_geometry)

__all__ = [
    'eval_mode', 'is_vit_backbone', 'cls_attention_grid', 'attention_pass',
    'feature_saliency', 'normalize_map', 'build_extractor', 'module_on'
]


@contextlib.contextmanager
def eval_mode(module: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Run the body with ``module`` in eval mode (restored afterwards)."""
    was_training = module.training
    if enabled and was_training:
        module.eval()
    try:
        yield
    finally:
        if enabled and was_training:
            module.train()


def is_vit_backbone(backbone: nn.Module) -> bool:
    """Whether the functional ToMe forward supports ``backbone``."""
    try:
        vit_geometry(backbone)
    except ValueError:
        return False
    return True


def cls_attention_grid(out: ToMeOutput) -> Tensor:
    """CLS-query attention over the patches, averaged over heads.

    Merged tokens (ToMe) share their attention evenly among the original
    patches they hold, so the map still sums to the CLS token's total
    attention on patch tokens.

    Args:
        out (ToMeOutput): A forward run with ``attn_layer`` set.

    Returns:
        Tensor: ``[B, h, w]`` float map (rows of a head-mean softmax).

    Raises:
        ValueError: If ``out`` carries no attention or the backbone has no
            class token.
    """
    if out.attn is None or out.source_in is None:
        raise ValueError('the ToMe forward was run without attn_layer; no '
                         'attention map to read')
    check_cls_token(out, 'the CLS attention map')
    p = out.num_extra_tokens
    h, w = out.patch_resolution
    cls_row = out.attn[:, :, 0, :].float().mean(1)  # [B, T_l]
    src = out.source_in[:, p:]  # [B, h*w] original patch -> token
    sizes = torch.zeros_like(cls_row).scatter_add_(
        1, src, torch.ones_like(src, dtype=cls_row.dtype))
    per_patch = cls_row.gather(1, src) / sizes.gather(1, src)
    return per_patch.reshape(-1, h, w)


def attention_pass(backbone: nn.Module,
                   inputs: Tensor,
                   attn_layer: int = -1,
                   eval: bool = True,
                   r_list: Optional[Sequence[int]] = None,
                   trace_source: bool = False) -> ToMeOutput:
    """No-grad forward of ``backbone`` that keeps block ``attn_layer``'s
    attention (the backbone's current merge schedule if ``r_list`` is None).
    Unless the final source map is asked for, the pass stops after block
    ``attn_layer`` (``outs`` is then empty).

    Args:
        backbone (nn.Module): A supported ViT.
        inputs (Tensor): ``[B, C, H, W]`` images.
        attn_layer (int): 0-based block, negative from the end.
            Defaults to -1.
        eval (bool): Run in eval mode (no dropout / drop-path).
            Defaults to True.
        r_list (Sequence[int], optional): Merge schedule. Defaults to None.
        trace_source (bool): Keep the final source map. Defaults to False.

    Returns:
        ToMeOutput: See :func:`forward_with_attention`.
    """
    with torch.no_grad(), eval_mode(backbone, eval):
        return forward_with_attention(
            backbone,
            inputs,
            attn_layer=attn_layer,
            r_list=r_list,
            trace_source=trace_source,
            stop_at_attn_layer=not trace_source)


def feature_saliency(backbone: nn.Module, inputs: Tensor,
                     eval: bool = True) -> Tensor:
    """Channel-mean activation of a CNN-style backbone's last feature map.

    This is Attentive-CutMix's "attention" for convolutional extractors.

    Returns:
        Tensor: ``[B, h, w]``.

    Raises:
        ValueError: If the backbone's last output is not ``[B, C, h, w]``.
    """
    with torch.no_grad(), eval_mode(backbone, eval):
        outs = backbone(inputs)
    feat = outs[-1] if isinstance(outs, (tuple, list)) else outs
    if not isinstance(feat, Tensor) or feat.dim() != 4:
        shape = tuple(feat.shape) if isinstance(feat, Tensor) else type(feat)
        raise ValueError(
            f'{type(backbone).__name__}: the last backbone output must be a '
            f'feature map [B, C, h, w] to compute a saliency, got {shape}; '
            "set the backbone's out_indices / out_type accordingly")
    return feat.float().mean(1)


def normalize_map(saliency: Tensor, eps: float = 1e-12) -> Tensor:
    """Scale each ``[h, w]`` map of a ``[B, h, w]`` batch to sum 1
    (uniform where a map is all zero)."""
    flat = saliency.flatten(1).clamp_min(0)
    total = flat.sum(1, keepdim=True)
    uniform = torch.full_like(flat, 1.0 / flat.shape[1])
    out = torch.where(total > eps, flat / total.clamp_min(eps), uniform)
    return out.reshape(saliency.shape)


def build_extractor(cfg: dict, owner: str, setting: str) -> nn.Module:
    """Build a frozen feature extractor from a backbone config.

    The config is copied (never modified). When it has an ``init_cfg``,
    ``init_weights()`` runs, so ``init_cfg=dict(type='Pretrained',
    checkpoint=...)`` loads weights. The module is put in eval mode with
    gradients off.

    Raises:
        TypeError: If ``cfg`` is not a dict with a ``type``.
    """
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(
            f"{owner}: {setting}={cfg!r} must be a backbone config dict with "
            "a 'type'")
    from mmpretrain.registry import MODELS
    module = MODELS.build(copy.deepcopy(dict(cfg)))
    if cfg.get('init_cfg') is not None and hasattr(module, 'init_weights'):
        module.init_weights()
    module.eval()
    for param in module.parameters():
        param.requires_grad_(False)
    return module


def module_on(module: nn.Module, device: torch.device) -> nn.Module:
    """Move ``module`` to ``device`` if its parameters live elsewhere."""
    param = next(module.parameters(), None)
    if param is not None and param.device != device:
        module.to(device)
    return module
