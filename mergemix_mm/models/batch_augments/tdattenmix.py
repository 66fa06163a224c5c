"""TdAttenMix: SMMix-style region mixing guided by a balance of top-down
(label-driven) and bottom-up attention, with an area/attention label."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmpretrain.registry import BATCH_AUGMENTS

from ..tome import forward_with_attention, vit_geometry
from .attention_utils import (attention_pass, cls_attention_grid, eval_mode,
                              normalize_map)
from .base import derangement
from .mix_plan import check_number
from .smmix import SMMix, region_swap_plan

__all__ = [
    'TdAttenMix', 'top_down_map', 'label_relevance', 'region_attention_lam'
]


def top_down_map(relevance: torch.Tensor, high: float = 0.7) -> torch.Tensor:
    """Threshold a non-negative relevance map like the official gaze map:
    ``(m - (high * max + (1 - high) * min)).clamp(0)`` per image.

    Args:
        relevance (Tensor): ``[B, h, w]``.
        high (float): Threshold position between min and max.
            Defaults to 0.7.

    Returns:
        Tensor: ``[B, h, w]`` non-negative map.
    """
    flat = relevance.float().flatten(1)
    hi = flat.max(1).values[:, None, None]
    lo = flat.min(1).values[:, None, None]
    return (relevance.float() - (high * hi + (1 - high) * lo)).clamp_min(0)


def label_relevance(model: torch.nn.Module, inputs: torch.Tensor,
                    batch_score: torch.Tensor, attn_layer: int = -1
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Top-down (label-driven) and bottom-up maps from one eval-mode pass.

    Top-down: gradient x input of the labels' score ``sum(scores * logits)``
    with respect to the image, positive part, summed per patch. Bottom-up:
    CLS attention of block ``attn_layer``. Gradients are taken with respect
    to the input only (no parameter gradient is written).

    Args:
        model (nn.Module): Classifier with ``backbone``, optional ``neck``,
            ``head``.
        inputs (Tensor): ``[B, C, H, W]`` images.
        batch_score (Tensor): ``[B, K]`` label scores.
        attn_layer (int): Block of the bottom-up attention. Defaults to -1.

    Returns:
        tuple: ``(top_down, bottom_up)``, both ``[B, h, w]``.
    """
    ph, pw = vit_geometry(model.backbone).patch_size
    with torch.enable_grad(), eval_mode(model):
        x = inputs.detach().requires_grad_(True)
        out = forward_with_attention(
            model.backbone, x, attn_layer=attn_layer, trace_source=False)
        feats = out.outs
        if getattr(model, 'with_neck', False):
            feats = model.neck(feats)
        logits = model.head(feats)
        score = (logits.float() * batch_score.float()).sum()
        grad, = torch.autograd.grad(score, x)
    rel = (grad * x.detach()).sum(1, keepdim=True).float()
    top_down = F.avg_pool2d(rel.clamp_min(0), (ph, pw))[:, 0] * (ph * pw)
    return top_down, cls_attention_grid(out)


def region_attention_lam(saliency: torch.Tensor, plan: dict) -> torch.Tensor:
    """Attention share of the own image in a region-swapped pair.

    ``own = sum of own saliency outside its destination window``,
    ``partner = sum of partner saliency inside its source window``;
    returns ``own / (own + partner)`` (the area weight where both are 0).
    """
    B, h, w = saliency.shape
    s = plan['side']
    own_keep = torch.ones_like(saliency)
    pasted = torch.zeros_like(saliency)
    for i, ((dr, dc), (sr, sc)) in enumerate(
            zip(plan['dst'].tolist(), plan['src'].tolist())):
        own_keep[i, dr:dr + s, dc:dc + s] = 0
        pasted[i, sr:sr + s, sc:sc + s] = 1
    own = (own_keep * saliency).flatten(1).sum(1)
    partner = (pasted * saliency[plan['index']]).flatten(1).sum(1)
    total = own + partner
    return torch.where(total > 0, own / total.clamp_min(1e-12),
                       plan['lam'].float())


@BATCH_AUGMENTS.register_module()
class TdAttenMix(SMMix):
    r"""TdAttenMix (`TdAttenMix: Top-Down Attention Guided Mixup
    <https://arxiv.org/abs/2501.15409>`_, AAAI 2025), compact version.

    Like :class:`SMMix`, the partner's most salient ``s x s`` window replaces
    the own image's least salient one, but the saliency balances a
    *top-down* (label-driven) map and the *bottom-up* CLS attention, both
    from one eval-mode pass of the bound model (:func:`label_relevance`):
    ``S = w_td * TD + (1 - w_td) * BU`` (each normalised to sum 1), and the
    label weight mixes area and attention:
    ``lam = ratio * lam_area + (1 - ratio) * lam_attn`` with
    ``lam_attn = S_own(visible) / (S_own(visible) + S_partner(pasted))``.

    Implemented: region selection, the top-down/bottom-up balance and the
    area-attention label mixing (``ratio=0.5`` as the official code).
    Simplifications: the official top-down attention comes from a separate,
    gaze-trained AbSViT conditioned on the label; here the top-down map is
    the bound model's own label-driven relevance, gradient x input of the
    label's score per patch, thresholded like the official gaze map
    (:func:`top_down_map`), so no extra network or gaze data is needed (the
    extra cost is one eval-mode forward and an input-gradient backward). The
    attention label is computed per sample (the official code sums over the
    whole batch). The fine-grained token labels and consistency loss of the
    official training loop are not implemented. Pair it with Mixup through
    ``probs`` (official ``switch_prob=0.5``).

    Args:
        min_side_ratio (float): See :class:`SMMix`. Defaults to 0.25.
        max_side_ratio (float): See :class:`SMMix`. Defaults to 0.75.
        attn_layer (int): Block of the bottom-up attention. Defaults to -1.
        top_down_weight (float): Weight of the top-down map in [0, 1].
            Defaults to 0.5.
        ratio (float): Weight of the area term of the label in [0, 1].
            Defaults to 0.5.
    """

    def __init__(self,
                 min_side_ratio: float = 0.25,
                 max_side_ratio: float = 0.75,
                 attn_layer: int = -1,
                 top_down_weight: float = 0.5,
                 ratio: float = 0.5):
        super().__init__(min_side_ratio, max_side_ratio, attn_layer)
        self.top_down_weight = float(
            check_number('TdAttenMix', 'top_down_weight', top_down_weight,
                         low=0, high=1))
        self.ratio = float(
            check_number('TdAttenMix', 'ratio', ratio, low=0, high=1))

    def saliency(self, inputs: torch.Tensor,
                 batch_score: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Balanced top-down / bottom-up saliency ``[B, h, w]`` (sums to 1).

        Raises:
            ValueError: If the labels are missing or do not fit the head.
        """
        model = self.model
        if self.top_down_weight == 0:
            out = attention_pass(model.backbone, inputs, self.attn_layer,
                                 eval=True)
            return normalize_map(cls_attention_grid(out))
        if batch_score is None:
            raise ValueError(
                'TdAttenMix: the top-down map needs the labels; call it '
                'with batch_score (or set top_down_weight=0).')
        num_classes = getattr(model.head, 'num_classes', None)
        if num_classes is not None and batch_score.shape[1] != num_classes:
            raise ValueError(
                f'TdAttenMix: batch_score has {batch_score.shape[1]} classes '
                f'but the head has {num_classes}.')
        top_down, bottom_up = label_relevance(model, inputs, batch_score,
                                              self.attn_layer)
        w = self.top_down_weight
        return w * normalize_map(top_down_map(top_down)) + \
            (1 - w) * normalize_map(bottom_up)

    def build_mix(self,
                  inputs: torch.Tensor,
                  batch_score: Optional[torch.Tensor] = None) -> dict:
        """Saliency, windows and the area/attention label weights.

        Returns:
            dict: See :func:`~.smmix.region_swap_plan`; ``lam`` is the mixed
            label weight, ``lam_area`` and ``lam_attn`` its two terms,
            ``saliency`` the balanced map.
        """
        patch_size, grid = self._grid(inputs)
        sal = self.saliency(inputs, batch_score)
        index = derangement(inputs.shape[0], inputs.device)
        plan = region_swap_plan(sal, index, self.draw_side(grid), patch_size,
                                tuple(inputs.shape[-2:]))
        lam_area = plan['lam']
        lam_attn = region_attention_lam(sal, plan)
        plan.update(
            lam=self.ratio * lam_area + (1 - self.ratio) * lam_attn,
            lam_area=lam_area,
            lam_attn=lam_attn,
            saliency=sal)
        return plan

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(min_side_ratio='
                f'{self.min_side_ratio}, max_side_ratio='
                f'{self.max_side_ratio}, top_down_weight='
                f'{self.top_down_weight}, ratio={self.ratio})')
