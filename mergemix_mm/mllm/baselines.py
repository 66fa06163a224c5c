"""Hand-crafted loser images for the MLLM baselines (paper Table 3, ``rl``).

Mixup, CutMix and ResizeMix build the loser of the preference pair in the
same way MergeMix does, only with a hand-crafted mask; the loss is the same
mixed SimPO with margin ``1 - lambda`` where ``lambda`` is the *realised*
fraction of the clean image that the loser keeps (``ALGORITHM.md`` §9.5).
The official LLaVA augmenter mis-unpacks the CutMix box (x1, y1, x2, y2 read
as x1, x2, y1, y2); here the box is used as drawn.

Every function takes ``images [B, C, H, W]``, a partner index and the
step's ``lam`` and returns ``(mixed, lam_kept)`` with ``lam_kept`` the
fraction of each image that comes from itself (``[B]``).
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['mixup_loser', 'cutmix_loser', 'resizemix_loser', 'random_box']


def _check(images: Tensor, lam: float) -> None:
    if images.dim() != 4:
        raise ValueError('images must have shape [B, C, H, W], got '
                         f'{tuple(images.shape)}')
    if not 0. <= float(lam) <= 1.:
        raise ValueError(f'lam={lam!r} must lie in [0, 1]')


def mixup_loser(images: Tensor, partner: Tensor,
                lam: float) -> Tuple[Tensor, Tensor]:
    """Mixup: ``lam * x + (1 - lam) * x[partner]``.

    Returns:
        tuple[Tensor, Tensor]: Mixed images and ``lam_kept`` ``[B]``.
    """
    _check(images, lam)
    lam = float(lam)
    mixed = lam * images + (1. - lam) * images[partner]
    return mixed, images.new_full((images.shape[0], ), lam, dtype=torch.float)


def random_box(height: int, width: int, side_ratio: float,
               generator: Optional[torch.Generator] = None
               ) -> Tuple[int, int, int, int]:
    """A box of ``side_ratio * (H, W)`` at a uniform centre, clipped.

    Returns:
        tuple[int, int, int, int]: ``(y1, y2, x1, x2)``, half-open.
    """
    cut_h, cut_w = int(height * side_ratio), int(width * side_ratio)
    cy = int(torch.randint(0, height, (1, ), generator=generator))
    cx = int(torch.randint(0, width, (1, ), generator=generator))
    y1, y2 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    x1, x2 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return y1, y2, x1, x2


def cutmix_loser(images: Tensor, partner: Tensor, lam: float,
                 generator: Optional[torch.Generator] = None
                 ) -> Tuple[Tensor, Tensor]:
    """CutMix: paste a box of area about ``1 - lam`` from the partner.

    The box side ratio is ``sqrt(1 - lam)``; ``lam_kept`` is corrected to
    ``1 - box_area / (H * W)`` after clipping.

    Returns:
        tuple[Tensor, Tensor]: Mixed images and ``lam_kept`` ``[B]``.
    """
    _check(images, lam)
    H, W = images.shape[-2:]
    y1, y2, x1, x2 = random_box(H, W, math.sqrt(1. - float(lam)), generator)
    mixed = images.clone()
    mixed[:, :, y1:y2, x1:x2] = images[partner][:, :, y1:y2, x1:x2]
    lam_kept = 1. - (y2 - y1) * (x2 - x1) / (H * W)
    return mixed, images.new_full((images.shape[0], ), lam_kept,
                                  dtype=torch.float)


def resizemix_loser(images: Tensor,
                    partner: Tensor,
                    lam: float,
                    scope: Tuple[float, float] = (0.1, 0.8),
                    interpolation: str = 'nearest',
                    generator: Optional[torch.Generator] = None
                    ) -> Tuple[Tensor, Tensor]:
    """ResizeMix: paste the whole partner, resized, into a box.

    The box side ratio is ``tau = scope[0] + (scope[1] - scope[0]) * lam``,
    i.e. ``tau ~ U(scope)`` when ``lam ~ U(0, 1)`` (the official LLaVA law).
    ``lam_kept = 1 - box_area / (H * W)``.

    Args:
        images (Tensor): ``[B, C, H, W]``.
        partner (Tensor): ``LongTensor[B]``.
        lam (float): The step's mixing ratio in ``[0, 1]``.
        scope (tuple[float, float]): Range of the side ratio.
            Defaults to (0.1, 0.8).
        interpolation (str): ``F.interpolate`` mode. Defaults to 'nearest'.
        generator (torch.Generator, optional): RNG. Defaults to None.

    Returns:
        tuple[Tensor, Tensor]: Mixed images and ``lam_kept`` ``[B]``.
    """
    _check(images, lam)
    lo, hi = scope
    if not 0. < lo <= hi <= 1.:
        raise ValueError(f'resizemix scope={scope!r} must satisfy '
                         '0 < low <= high <= 1')
    tau = lo + (hi - lo) * float(lam)
    H, W = images.shape[-2:]
    y1, y2, x1, x2 = random_box(H, W, tau, generator)
    mixed = images.clone()
    if y2 > y1 and x2 > x1:
        kw = {} if interpolation == 'nearest' else dict(align_corners=False)
        small = F.interpolate(images[partner], size=(y2 - y1, x2 - x1),
                              mode=interpolation, **kw)
        mixed[:, :, y1:y2, x1:x2] = small
    lam_kept = 1. - (y2 - y1) * (x2 - x1) / (H * W)
    return mixed, images.new_full((images.shape[0], ), lam_kept,
                                  dtype=torch.float)
