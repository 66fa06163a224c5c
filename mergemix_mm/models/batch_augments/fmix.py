"""FMix: masks from thresholded low-frequency Fourier noise."""
import math
import random
from typing import Optional, Tuple

import torch
from mmpretrain.registry import BATCH_AUGMENTS

from ...utils.checks import check_bool
from .base import derangement
from .mix_plan import PlannedMix, check_alpha, check_number, sample_beta

__all__ = ['FMix', 'low_frequency_image', 'binarise_mask']


def low_frequency_image(size: Tuple[int, int],
                        decay_power: float,
                        generator: Optional[torch.Generator] = None
                        ) -> torch.Tensor:
    r"""A random grey image with a :math:`1/f^{\delta}` amplitude spectrum.

    Complex Gaussian noise on the half spectrum is scaled by
    :math:`1 / \max(f, 1/\max(H, W))^{\delta}` and inverted with a real FFT.

    Args:
        size (tuple[int, int]): ``(H, W)``.
        decay_power (float): :math:`\delta`; larger is smoother.
        generator (torch.Generator, optional): RNG. Defaults to None.

    Returns:
        Tensor: ``[H, W]`` float32 (CPU).
    """
    h, w = size
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    freq = torch.sqrt(fx * fx + fy * fy)
    scale = 1.0 / freq.clamp_min(1.0 / max(h, w))**decay_power
    real = torch.randn(freq.shape, generator=generator)
    imag = torch.randn(freq.shape, generator=generator)
    spectrum = torch.complex(real * scale, imag * scale)
    return torch.fft.irfftn(spectrum, s=(h, w)).float()


def binarise_mask(image: torch.Tensor, lam: float,
                  max_soft: float = 0.0) -> torch.Tensor:
    """Keep the ``lam`` fraction of highest-valued pixels as 1.

    The kept count is ``ceil`` or ``floor`` of ``lam * H * W`` with equal
    probability (FMix's rule), so the mean is ``lam`` to within one pixel.
    ``max_soft > 0`` replaces the hard edge by a linear ramp over
    ``2 * soft`` pixels around the threshold rank.

    Args:
        image (Tensor): ``[H, W]`` grey image.
        lam (float): Target mean in [0, 1].
        max_soft (float): Softening in [0, 0.5]. Defaults to 0.

    Returns:
        Tensor: ``[H, W]`` mask in [0, 1].
    """
    flat = image.flatten()
    n = flat.numel()
    order = flat.argsort(descending=True)
    num = math.ceil(lam * n) if random.random() > 0.5 else math.floor(lam * n)
    eff_soft = min(max_soft, lam, 1 - lam)
    soft = int(n * eff_soft)
    lo, hi = max(num - soft, 0), min(num + soft, n)
    values = torch.zeros(n)
    values[:lo] = 1.0
    if hi > lo:
        values[lo:hi] = torch.linspace(1.0, 0.0, hi - lo)
    mask = torch.empty(n)
    mask[order] = values
    return mask.reshape(image.shape)


@BATCH_AUGMENTS.register_module()
class FMix(PlannedMix):
    r"""FMix batch augment (`FMix: Enhancing Mixed Sample Data Augmentation
    <https://arxiv.org/abs/2002.12047>`_).

    Per batch: draw :math:`\lambda \sim Beta(\alpha, \alpha)` (or
    :math:`Beta(\alpha + 1, \alpha)` with ``reformulate``); sample a
    low-frequency grey image (:func:`low_frequency_image`); keep its top
    :math:`\lambda` fraction of pixels as the own image (1) and fill the rest
    from a partner (a permutation without fixed points). The label weight of
    the own image is the mask's mean, which equals :math:`\lambda` to within
    one pixel. One mask is shared by the batch, as in the reference code.

    Implemented from the paper: the spectrum law, the rank binarisation
    (ceil/floor at random), ``max_soft`` and ``reformulate``. Difference: the
    label uses the realised mask mean instead of the drawn :math:`\lambda`
    (they differ by at most ``1 / (H W)``).

    Args:
        alpha (float): Beta parameter, > 0. Defaults to 1.0.
        decay_power (float): Spectrum decay :math:`\delta` > 0.
            Defaults to 3.0.
        max_soft (float): Edge softening in [0, 0.5]. Defaults to 0.
        reformulate (bool): Draw :math:`\lambda` from
            :math:`Beta(\alpha + 1, \alpha)`. Defaults to False.
    """

    def __init__(self,
                 alpha: float = 1.0,
                 decay_power: float = 3.0,
                 max_soft: float = 0.0,
                 reformulate: bool = False):
        self.alpha = check_alpha('FMix', alpha)
        self.decay_power = float(
            check_number('FMix', 'decay_power', decay_power, low=0,
                         low_open=True))
        self.max_soft = float(
            check_number('FMix', 'max_soft', max_soft, low=0, high=0.5))
        self.reformulate = check_bool('FMix', 'reformulate', reformulate)

    def build_mix(self,
                  inputs: torch.Tensor,
                  batch_score: Optional[torch.Tensor] = None) -> dict:
        """Draw the Fourier mask, partners and label weights.

        Returns:
            dict: ``mask`` [B, 1, H, W] (1 = own pixel), ``index`` [B],
            ``lam`` [B] (mask mean), ``lam_draw`` (float, the drawn
            :math:`\\lambda`).
        """
        B, device = inputs.shape[0], inputs.device
        H, W = inputs.shape[-2:]
        beta = self.alpha + 1 if self.reformulate else self.alpha
        lam = sample_beta(beta, self.alpha)
        grey = low_frequency_image((H, W), self.decay_power)
        mask = binarise_mask(grey, lam, self.max_soft).to(device)
        lam_mask = mask.mean().float()
        return dict(
            mask=mask[None, None].expand(B, 1, H, W),
            index=derangement(B, device),
            lam=lam_mask.expand(B).clone(),
            lam_draw=lam)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(alpha={self.alpha}, decay_power='
                f'{self.decay_power}, max_soft={self.max_soft}, '
                f'reformulate={self.reformulate})')
