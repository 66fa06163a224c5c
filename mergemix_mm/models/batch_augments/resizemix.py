"""ResizeMix with the paper's (and OpenMixup's) box law.

mmpretrain already registers ``ResizeMix``, whose law differs (ALGORITHM.md
§9.3): it maps a Beta draw to ``[lam_min, lam_max]`` and uses CutMix's
``sqrt(1 - lam)`` side, so it pastes boxes of area about ``1 - lam`` in
[0.2, 0.9]. :class:`ResizeMixTau` draws the side ratio ``tau`` directly, as
the ResizeMix paper and OpenMixup do, so the pasted area is about
``tau ** 2`` in [0.01, 0.64].
"""
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmpretrain.registry import BATCH_AUGMENTS

from ...utils.checks import check_bool
from .base import derangement
from .box_utils import box_area, box_keep_mask, random_box
from .mix_plan import PlannedMix, check_alpha, check_range_pair

__all__ = ['ResizeMixTau']

_MODES = ('nearest', 'bilinear', 'bicubic', 'area')


@BATCH_AUGMENTS.register_module()
class ResizeMixTau(PlannedMix):
    r"""ResizeMix with the side-ratio law of the paper (`ResizeMix: Mixing
    Data with Preserved Object Information and True Labels
    <https://arxiv.org/abs/2012.11101>`_) and OpenMixup.

    Per batch: draw the side ratio :math:`\tau \sim U(\text{scope})` (or,
    with ``use_alpha``, :math:`\tau \sim Beta(\alpha, \alpha)` redrawn
    uniformly in ``scope`` when it falls outside, as OpenMixup's CIFAR
    configs); a box of ``int(H tau) x int(W tau)`` at a uniform centre,
    clipped to the image, receives the *whole* partner image (a permutation
    without fixed points) resized into it. The own label weight is
    ``1 - box area / (H W)``; the partner keeps its whole (shrunk) object.

    Use mmpretrain's ``ResizeMix`` for its own law; this class exists so the
    paper's ResizeMix numbers can be reproduced.

    Args:
        scope (tuple[float, float]): Range of :math:`\tau` in (0, 1].
            Defaults to (0.1, 0.8).
        use_alpha (bool): Draw :math:`\tau` from a Beta first.
            Defaults to False.
        alpha (float): Beta parameter, > 0. Defaults to 1.0.
        interpolation (str): ``'nearest'``, ``'bilinear'``, ``'bicubic'`` or
            ``'area'``. Defaults to ``'bilinear'`` (OpenMixup's CIFAR base
            config).
    """

    def __init__(self,
                 scope: Tuple[float, float] = (0.1, 0.8),
                 use_alpha: bool = False,
                 alpha: float = 1.0,
                 interpolation: str = 'bilinear'):
        if not isinstance(scope, (list, tuple)):
            raise TypeError(
                f'ResizeMixTau: scope={scope!r} must be a (min, max) pair.')
        self.scope = check_range_pair(
            'ResizeMixTau', 'scope', scope, low=0, high=1, low_open=True)
        self.use_alpha = check_bool('ResizeMixTau', 'use_alpha', use_alpha)
        self.alpha = check_alpha('ResizeMixTau', alpha)
        if interpolation not in _MODES:
            raise ValueError(
                f'ResizeMixTau: interpolation={interpolation!r} must be one '
                f'of {_MODES}.')
        self.interpolation = interpolation

    def _draw_tau(self) -> float:
        lo, hi = self.scope
        if self.use_alpha:
            tau = float(np.random.beta(self.alpha, self.alpha))
            if lo <= tau <= hi:
                return tau
        return float(np.random.uniform(lo, hi))

    def build_mix(self,
                  inputs: torch.Tensor,
                  batch_score: Optional[torch.Tensor] = None) -> dict:
        """Draw the box and partners.

        Returns:
            dict: ``mask`` [B, 1, H, W] (0 in the box), ``index`` [B],
            ``lam`` [B], ``box`` ``(y1, y2, x1, x2)``, ``tau``,
            ``partner_area_scale`` (box area / image area: the factor by
            which the partner's content shrinks).
        """
        B, device = inputs.shape[0], inputs.device
        H, W = inputs.shape[-2:]
        tau = self._draw_tau()
        box = random_box(int(H * tau), int(W * tau), H, W)
        area = box_area(box) / float(H * W)
        return dict(
            mask=box_keep_mask(B, H, W, box, device),
            index=derangement(B, device),
            lam=torch.full((B, ), 1 - area, device=device),
            box=box,
            tau=tau,
            partner_area_scale=area)

    def apply_mix(self, own: torch.Tensor, partner: torch.Tensor,
                  plan: dict) -> torch.Tensor:
        """Paste the resized partner into the box (a new tensor)."""
        y1, y2, x1, x2 = plan['box']
        out = own.clone()
        if y2 > y1 and x2 > x1:
            kwargs = {} if self.interpolation in ('nearest', 'area') else \
                dict(align_corners=False)
            out[..., y1:y2, x1:x2] = F.interpolate(
                partner, size=(y2 - y1, x2 - x1), mode=self.interpolation,
                **kwargs).to(own.dtype)
        return out

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(scope={self.scope}, use_alpha='
                f'{self.use_alpha}, alpha={self.alpha}, interpolation='
                f'{self.interpolation!r})')
