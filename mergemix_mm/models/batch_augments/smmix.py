"""SMMix: the partner's most attended square replaces the own image's least
attended square."""
import math
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmpretrain.registry import BATCH_AUGMENTS

from ..tome import vit_geometry
from .attention_utils import attention_pass, cls_attention_grid
from .base import ModelAwareMixin, derangement
from .mix_plan import PlannedMix, check_number

__all__ = ['SMMix', 'window_sums', 'region_swap_plan']


def window_sums(saliency: torch.Tensor, side: int) -> torch.Tensor:
    """Sum of ``saliency`` over every ``side x side`` window (stride 1).

    Args:
        saliency (Tensor): ``[B, h, w]``.
        side (int): Window side in cells.

    Returns:
        Tensor: ``[B, h - side + 1, w - side + 1]``.
    """
    pooled = F.avg_pool2d(saliency[:, None].float(), side, stride=1)
    return pooled[:, 0] * side * side


def region_swap_plan(saliency: torch.Tensor, index: torch.Tensor, side: int,
                     patch_size: Tuple[int, int],
                     img_size: Tuple[int, int]) -> dict:
    """SMMix's region choice: per pair, the own image's least salient
    ``side x side`` window receives the partner's most salient one.

    Args:
        saliency (Tensor): ``[B, h, w]`` per-patch saliency.
        index (Tensor): ``[B]`` partners.
        side (int): Window side in patches.
        patch_size (tuple[int, int]): Patch size in pixels.
        img_size (tuple[int, int]): ``(H, W)``.

    Returns:
        dict: ``mask`` [B, 1, H, W] (0 in the destination window),
        ``index``, ``lam`` [B] (own visible area), ``side``, ``dst`` [B, 2]
        and ``src`` [B, 2] window corners (patch row, col), ``patch_size``.
    """
    B, h, w = saliency.shape
    ph, pw = patch_size
    H, W = img_size
    sums = window_sums(saliency, side)
    ow = sums.shape[-1]
    dst_flat = sums.flatten(1).argmin(1)
    src_flat = sums.flatten(1).argmax(1)[index]
    dst = torch.stack([dst_flat // ow, dst_flat % ow], 1).cpu()
    src = torch.stack([src_flat // ow, src_flat % ow], 1).cpu()
    mask = torch.ones(B, 1, H, W, device=saliency.device)
    for i, (r, c) in enumerate(dst.tolist()):
        mask[i, :, r * ph:(r + side) * ph, c * pw:(c + side) * pw] = 0
    lam = mask.flatten(1).mean(1)
    return dict(
        mask=mask,
        index=index,
        lam=lam,
        side=side,
        dst=dst,
        src=src,
        patch_size=(ph, pw))


def apply_region_swap(own: torch.Tensor, partner: torch.Tensor,
                      plan: dict) -> torch.Tensor:
    """Copy each partner's ``src`` window into the own ``dst`` window."""
    ph, pw = plan['patch_size']
    s = plan['side']
    out = own.clone()
    for i, ((dr, dc), (sr, sc)) in enumerate(
            zip(plan['dst'].tolist(), plan['src'].tolist())):
        out[i, :, dr * ph:(dr + s) * ph, dc * pw:(dc + s) * pw] = \
            partner[i, :, sr * ph:(sr + s) * ph, sc * pw:(sc + s) * pw]
    return out


@BATCH_AUGMENTS.register_module()
class SMMix(ModelAwareMixin, PlannedMix):
    r"""SMMix (`SMMix: Self-Motivated Image Mixing for Vision Transformers
    <https://arxiv.org/abs/2212.12977>`_, ICCV 2023).

    Per batch: a no-grad, eval-mode forward of the bound model's backbone on
    the clean batch gives each image's last-block CLS attention per patch
    (the "self-motivated" saliency). A square side ``s`` (in patches) is
    drawn uniformly from ``[int(g min_side_ratio), int(g max_side_ratio)]``
    (``g`` = the patch grid's shorter side). For every pair, the partner's
    most attended ``s x s`` window (sliding, stride 1) is copied into the own
    image's *least* attended window (the locations may differ). The own
    label weight is the visible area ``1 - s^2 / (h w)``, as the official
    code's mixed target.

    Implemented: the max-min attention region mixing and the area label.
    Simplifications: the official fine-grained label assignment (token-level
    labels for the mixed and unmixed tokens through an extra head) and the
    feature-consistency loss against the un-mixed prediction are not
    implemented (they need model changes); partners come from a permutation
    without fixed points instead of the batch flip. The recipe's Mixup
    switch is expressed through ``RandomBatchAugment``:
    ``augments=[SMMix(), Mixup(1.0)], probs=[0.8, 0.2]`` (OpenMixup) or
    ``[0.5, 0.5]`` (official ``switch_prob``).

    Args:
        min_side_ratio (float): Smallest square side / grid side, in
            (0, 1]. Defaults to 0.25.
        max_side_ratio (float): Largest square side / grid side, in
            [min_side_ratio, 1]. Defaults to 0.75.
        attn_layer (int): Block of the saliency attention. Defaults to -1.
    """

    def __init__(self,
                 min_side_ratio: float = 0.25,
                 max_side_ratio: float = 0.75,
                 attn_layer: int = -1):
        name = type(self).__name__
        self.min_side_ratio = float(
            check_number(name, 'min_side_ratio', min_side_ratio, low=0,
                         high=1, low_open=True))
        self.max_side_ratio = float(
            check_number(name, 'max_side_ratio', max_side_ratio,
                         low=self.min_side_ratio, high=1))
        self.attn_layer = check_number(
            name, 'attn_layer', attn_layer, integer=True)

    # ------------------------------------------------------------------
    def _grid(self, inputs: torch.Tensor) -> Tuple[Tuple[int, int], tuple]:
        geo = vit_geometry(self.model.backbone)
        ph, pw = geo.patch_size
        H, W = inputs.shape[-2:]
        if H % ph or W % pw:
            raise ValueError(
                f'{type(self).__name__}: input size {H}x{W} is not '
                f"divisible by the backbone's patch size {ph}x{pw}.")
        return (ph, pw), (H // ph, W // pw)

    def draw_side(self, grid: Tuple[int, int]) -> int:
        """Draw the square side (in patches) for a ``(h, w)`` grid."""
        g = min(grid)
        lo, hi = int(g * self.min_side_ratio), int(g * self.max_side_ratio)
        if lo < 1:
            raise ValueError(
                f'{type(self).__name__}: min_side_ratio='
                f'{self.min_side_ratio} gives squares of 0 patches on a '
                f'{grid[0]}x{grid[1]} patch grid; raise it to at least '
                f'{math.ceil(1000 / g) / 1000:.3f}.')
        return int(np.random.randint(lo, hi + 1))

    def saliency(self, inputs: torch.Tensor,
                 batch_score: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``[B, h, w]`` per-patch saliency of the clean images."""
        out = attention_pass(
            self.model.backbone, inputs, self.attn_layer, eval=True)
        return cls_attention_grid(out)

    def build_mix(self,
                  inputs: torch.Tensor,
                  batch_score: Optional[torch.Tensor] = None) -> dict:
        """Attention pass, square side, partners and windows.

        Returns:
            dict: See :func:`region_swap_plan`, plus ``saliency`` [B, h, w].
        """
        patch_size, grid = self._grid(inputs)
        sal = self.saliency(inputs, batch_score)
        index = derangement(inputs.shape[0], inputs.device)
        plan = region_swap_plan(sal, index, self.draw_side(grid), patch_size,
                                tuple(inputs.shape[-2:]))
        plan['saliency'] = sal
        return plan

    def apply_mix(self, own: torch.Tensor, partner: torch.Tensor,
                  plan: dict) -> torch.Tensor:
        """Move the partner windows into the own windows (a new tensor)."""
        return apply_region_swap(own, partner, plan)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(min_side_ratio='
                f'{self.min_side_ratio}, max_side_ratio='
                f'{self.max_side_ratio}, attn_layer={self.attn_layer})')
