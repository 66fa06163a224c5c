"""SmoothMix: a smooth-edged (Gaussian) region from the partner image."""
from typing import Optional, Tuple

import numpy as np
import torch
from mmpretrain.registry import BATCH_AUGMENTS

from .base import derangement
from .mix_plan import PlannedMix, check_range_pair, uniform_from

__all__ = ['SmoothMix', 'gaussian_blob']


def gaussian_blob(img_h: int, img_w: int, center: Tuple[float, float],
                  sigma: Tuple[float, float],
                  device: Optional[torch.device] = None) -> torch.Tensor:
    """``[H, W]`` map ``exp(-((y-cy)^2/(2 sy^2) + (x-cx)^2/(2 sx^2)))``
    (1 at the centre)."""
    ys = torch.arange(img_h, device=device, dtype=torch.float32)
    xs = torch.arange(img_w, device=device, dtype=torch.float32)
    dy = (ys - center[0])**2 / (2 * sigma[0]**2)
    dx = (xs - center[1])**2 / (2 * sigma[1]**2)
    return torch.exp(-(dy[:, None] + dx[None, :]))


@BATCH_AUGMENTS.register_module()
class SmoothMix(PlannedMix):
    r"""SmoothMix batch augment (SmoothMix: a Simple Yet Effective Data
    Augmentation to Train Robust Classifiers, Lee et al., CVPR Workshops
    2020).

    Per batch: a Gaussian blob :math:`G` (value 1 at a uniform random centre,
    :math:`\sigma = s \cdot H` vertically and :math:`s \cdot W` horizontally
    with :math:`s \sim U(\text{sigma\_range})`) shows the partner image (a
    permutation without fixed points) with weight :math:`G` and the own
    image with :math:`1 - G`, so the region has smooth edges. The label
    weight of the own image is the mean of :math:`1 - G`.

    Implemented from the paper's Gaussian ("smooth circle") mask with the
    reference σ law :math:`U(0.25, 0.5)`. Not implemented: the paper's
    square mask variant. OpenMixup's ``smoothmix`` labels the own image with
    the *partner's* area (its ``lam = sum(G) / HW`` is used as the own label
    weight); this class uses the own image's area, and ``compat='openmixup'``
    reproduces OpenMixup's label (for comparisons with its published
    numbers).

    Args:
        sigma_range (float | tuple[float, float]): σ as a fraction of the
            image side. Defaults to (0.25, 0.5).
        compat (str, optional): ``'openmixup'``: the own label weight is the
            partner's area, ``mean(G)``, as OpenMixup computes it. Defaults
            to None (the own area, ``mean(1 - G)``).
    """

    def __init__(self,
                 sigma_range: Tuple[float, float] = (0.25, 0.5),
                 compat: Optional[str] = None):
        self.sigma_range = check_range_pair(
            'SmoothMix', 'sigma_range', sigma_range, low=0, low_open=True)
        if compat not in (None, 'openmixup'):
            raise ValueError(f"SmoothMix: compat={compat!r} must be None or "
                             "'openmixup'.")
        self.compat = compat

    def build_mix(self,
                  inputs: torch.Tensor,
                  batch_score: Optional[torch.Tensor] = None) -> dict:
        """Draw the blob, partners and label weights.

        Returns:
            dict: ``mask`` [B, 1, H, W] (own weight ``1 - G``), ``index``
            [B], ``lam`` [B], ``center`` (cy, cx), ``sigma`` (sy, sx).
        """
        B, device = inputs.shape[0], inputs.device
        H, W = inputs.shape[-2:]
        center = (float(np.random.randint(H)), float(np.random.randint(W)))
        s = uniform_from(self.sigma_range)
        sigma = (s * H, s * W)
        mask = 1 - gaussian_blob(H, W, center, sigma, device)
        own_area = mask.mean()
        lam = 1 - own_area if self.compat == 'openmixup' else own_area
        return dict(
            mask=mask[None, None].expand(B, 1, H, W),
            index=derangement(B, device),
            lam=lam.expand(B).clone(),
            center=center,
            sigma=sigma)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(sigma_range={self.sigma_range}, '
                f'compat={self.compat!r})')
