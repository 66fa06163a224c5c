"""SaliencyMix: the partner's most salient box pasted at the same place."""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from mmpretrain.registry import BATCH_AUGMENTS

from ...utils.checks import check_bool
from .base import derangement
from .box_utils import box_area, centered_box
from .mix_plan import PlannedMix, check_alpha, check_number, sample_beta

__all__ = ['SaliencyMix', 'spectral_residual_saliency', 'gaussian_blur']


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[B, 1, H, W]`` with reflect padding."""
    if sigma <= 0:
        return x
    radius = max(1, int(math.ceil(3 * sigma)))
    radius = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    offsets = torch.arange(-radius, radius + 1, device=x.device,
                           dtype=x.dtype)
    kernel = torch.exp(-offsets**2 / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    x = F.pad(x, (radius, radius, 0, 0), mode='reflect')
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, radius, radius), mode='reflect')
    return F.conv2d(x, kernel.view(1, 1, -1, 1))


def spectral_residual_saliency(images: torch.Tensor,
                               work_size: int = 64,
                               blur_sigma: float = 2.5) -> torch.Tensor:
    """Static saliency by the spectral residual (Hou & Zhang, CVPR 2007).

    The grey image (channel mean) is resized to ``work_size``; the log
    amplitude spectrum minus its 3x3 local mean (the "spectral residual") is
    recombined with the phase, inverted, squared, blurred and resized back.
    It is invariant to the affine per-image intensity changes of input
    normalisation (they only move the DC term).

    Args:
        images (Tensor): ``[B, C, H, W]``.
        work_size (int): Side of the working resolution. Defaults to 64.
        blur_sigma (float): Gaussian blur σ at the working resolution.
            Defaults to 2.5.

    Returns:
        Tensor: ``[B, H, W]`` non-negative saliency.
    """
    H, W = images.shape[-2:]
    grey = images.float().mean(1, keepdim=True)
    grey = F.interpolate(
        grey, size=(work_size, work_size), mode='bilinear',
        align_corners=False, antialias=work_size < min(H, W))
    spectrum = torch.fft.fft2(grey)
    log_amp = torch.log(spectrum.abs() + 1e-8)
    local_mean = F.avg_pool2d(
        F.pad(log_amp, (1, 1, 1, 1), mode='replicate'), 3, stride=1)
    residual = torch.polar(torch.exp(log_amp - local_mean),
                           torch.angle(spectrum))
    saliency = torch.fft.ifft2(residual).abs()**2
    saliency = gaussian_blur(saliency, blur_sigma)
    saliency = F.interpolate(
        saliency, size=(H, W), mode='bilinear', align_corners=False)
    return saliency[:, 0].clamp_min(0)


@BATCH_AUGMENTS.register_module()
class SaliencyMix(PlannedMix):
    r"""SaliencyMix batch augment (`SaliencyMix: A Saliency Guided Data
    Augmentation Strategy for Better Regularization
    <https://arxiv.org/abs/2006.01791>`_, ICLR 2021).

    Draw :math:`\lambda \sim Beta(\alpha, \alpha)`; a box of sides
    ``int(H sqrt(1 - lam))`` x ``int(W sqrt(1 - lam))`` is centred on the
    saliency peak of the *partner* (source) image, clipped to the image, and
    the partner's pixels in the box replace the own image's pixels at the
    same place. The own label weight is ``1 - box area / (H W)``.

    Implemented from the paper (box law, source-peak centring, same-place
    paste, area label). Differences: the saliency map is the spectral
    residual (:func:`spectral_residual_saliency`, computed in torch) instead
    of OpenCV-contrib's fine-grained static saliency; with
    ``per_sample=True`` (default) every pair gets its own box, while the
    reference code uses the first partner's box for the whole batch
    (``per_sample=False``).

    Args:
        alpha (float): Beta parameter, > 0. Defaults to 1.0.
        per_sample (bool): One box per pair. Defaults to True.
        work_size (int): Saliency working resolution. Defaults to 64.
        blur_sigma (float): Saliency blur σ (working pixels), >= 0.
            Defaults to 2.5.
    """

    def __init__(self,
                 alpha: float = 1.0,
                 per_sample: bool = True,
                 work_size: int = 64,
                 blur_sigma: float = 2.5):
        self.alpha = check_alpha('SaliencyMix', alpha)
        self.per_sample = check_bool('SaliencyMix', 'per_sample', per_sample)
        self.work_size = check_number(
            'SaliencyMix', 'work_size', work_size, low=8, integer=True)
        self.blur_sigma = float(
            check_number('SaliencyMix', 'blur_sigma', blur_sigma, low=0))

    def saliency(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, H, W]`` saliency of ``images`` (override to plug in
        another static saliency)."""
        return spectral_residual_saliency(images, self.work_size,
                                          self.blur_sigma)

    def build_mix(self,
                  inputs: torch.Tensor,
                  batch_score: Optional[torch.Tensor] = None) -> dict:
        """Find the partners' saliency peaks and boxes.

        Returns:
            dict: ``mask`` [B, 1, H, W] (0 in the box), ``index`` [B],
            ``lam`` [B], ``boxes`` list of ``(y1, y2, x1, x2)``, ``peaks``
            [B, 2] (row, col) of each partner's saliency peak, ``cut``
            the unclipped box size ``(h, w)``.
        """
        B, device = inputs.shape[0], inputs.device
        H, W = inputs.shape[-2:]
        index = derangement(B, device)
        lam = sample_beta(self.alpha)
        ratio = math.sqrt(1 - lam)
        cut_h, cut_w = int(H * ratio), int(W * ratio)
        partners = inputs[index] if self.per_sample else inputs[index[:1]]
        with torch.no_grad():
            sal = self.saliency(partners)
        flat = sal.flatten(1).argmax(1)
        peaks = torch.stack([flat // W, flat % W], dim=1).cpu()
        if not self.per_sample:
            peaks = peaks.expand(B, 2)
        boxes = [
            centered_box(int(py), int(px), cut_h, cut_w, H, W)
            for py, px in peaks.tolist()
        ]
        mask = torch.ones(B, 1, H, W, device=device)
        for i, (y1, y2, x1, x2) in enumerate(boxes):
            mask[i, :, y1:y2, x1:x2] = 0
        lam_own = torch.tensor([1 - box_area(b) / (H * W) for b in boxes],
                               dtype=torch.float32, device=device)
        return dict(
            mask=mask,
            index=index,
            lam=lam_own,
            boxes=boxes,
            peaks=peaks,
            cut=(cut_h, cut_w))

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(alpha={self.alpha}, per_sample='
                f'{self.per_sample})')
