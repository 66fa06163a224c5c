"""Preference-pair builder: the loser image of every (winner, loser) pair.

Winner = the clean image, loser = the same image mixed with an in-batch
partner, both with the same response (``ALGORITHM.md`` §6.2, B8). The mixing
recipe is MergeMix (saliency top-k mask) or one of the hand-crafted baselines
(Mixup, CutMix, ResizeMix). This module works on one stack of same-size
images; the model adapters call it once per size group.
"""
from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from .baselines import cutmix_loser, mixup_loser, resizemix_loser
from .mask import (merged_topk_keep_mask, mix_with_mask, topk_keep_mask,
                   upsample_patch_mask)

__all__ = ['Saliency', 'Losers', 'build_losers']


class Saliency(NamedTuple):
    """Saliency of a stack of images for the MergeMix mask.

    Attributes:
        patch_scores (Tensor): ``[n, N]`` scores on the mixing grid
            (row-major), recovered through the ToMe source map.
        grid (tuple[int, int]): Mixing grid ``(h, w)``, ``h * w = N``.
        unit (int): Pixels per grid cell side.
        merged_scores (Tensor | None): ``[n, T]`` scores of the merged
            tokens (CLS first), for ``topk_space='merged'``.
        source (Tensor | None): ``LongTensor[n, 1 + N]`` source map into the
            merged tokens, for ``topk_space='merged'``.
    """
    patch_scores: Tensor
    grid: Tuple[int, int]
    unit: int
    merged_scores: Optional[Tensor] = None
    source: Optional[Tensor] = None


class Losers(NamedTuple):
    """Loser images and their realised mixing ratios.

    Attributes:
        images (Tensor): ``[n, C, H, W]`` loser images.
        lam_kept (Tensor): ``[n]`` fraction of each image kept from itself.
        keep_mask (Tensor | None): ``BoolTensor[n, N]`` kept grid cells
            (MergeMix only).
    """
    images: Tensor
    lam_kept: Tensor
    keep_mask: Optional[Tensor] = None


def build_losers(images: Tensor,
                 partner: Tensor,
                 lam: float,
                 method: str = 'mergemix',
                 saliency: Optional[Saliency] = None,
                 topk_space: str = 'recovered',
                 resizemix_scope: Tuple[float, float] = (0.1, 0.8),
                 generator: Optional[torch.Generator] = None) -> Losers:
    """Mix every image with its partner according to ``method``.

    Args:
        images (Tensor): ``[n, C, H, W]`` clean (normalised) images.
        partner (Tensor): ``LongTensor[n]`` partner index per image.
        lam (float): The step's mixing ratio in ``[0, 1]``: the fraction of
            each image the loser keeps (MergeMix keeps ``floor(lam * N)``
            cells; the baselines follow their own law, see
            :mod:`.baselines`).
        method (str): ``'mergemix'``, ``'mixup'``, ``'cutmix'`` or
            ``'resizemix'``. Defaults to ``'mergemix'``.
        saliency (Saliency, optional): Required for ``'mergemix'``.
        topk_space (str): ``'recovered'`` or ``'merged'`` (MergeMix).
            Defaults to ``'recovered'``.
        resizemix_scope (tuple[float, float]): ResizeMix side-ratio range.
            Defaults to (0.1, 0.8).
        generator (torch.Generator, optional): RNG for box positions.

    Returns:
        Losers: Loser images, ``lam_kept`` and (MergeMix) the kept cells.
    """
    if method == 'mixup':
        return Losers(*mixup_loser(images, partner, lam))
    if method == 'cutmix':
        return Losers(*cutmix_loser(images, partner, lam, generator))
    if method == 'resizemix':
        return Losers(*resizemix_loser(
            images, partner, lam, resizemix_scope, generator=generator))
    if method != 'mergemix':
        raise ValueError(f'method={method!r} does not build losers')
    if saliency is None:
        raise ValueError('method=mergemix needs the vision-tower saliency')
    h, w = saliency.grid
    if (h * saliency.unit, w * saliency.unit) != tuple(images.shape[-2:]):
        raise ValueError(
            f'saliency grid {h}x{w} with unit {saliency.unit} does not cover '
            f'images of size {tuple(images.shape[-2:])}')
    if topk_space == 'recovered':
        keep = topk_keep_mask(saliency.patch_scores, lam)
    elif topk_space == 'merged':
        if saliency.merged_scores is None or saliency.source is None:
            raise ValueError("topk_space='merged' needs the merged-token "
                             'scores and source map (CLIP towers only)')
        keep = merged_topk_keep_mask(saliency.merged_scores, saliency.source,
                                     lam)
    else:
        raise ValueError(f"topk_space={topk_space!r} must be 'recovered' or "
                         "'merged'")
    pixels = upsample_patch_mask(keep, (h, w), saliency.unit)
    mixed = mix_with_mask(images, partner, pixels)
    lam_kept = keep.float().mean(dim=1)
    return Losers(mixed, lam_kept, keep)
