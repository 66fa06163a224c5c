"""TdAttenMix: SMMix-style region mixing guided by a balance of top-down
(label-driven) and bottom-up attention, with an area/attention label."""
from typing import Optional

import torch
import torch.nn.functional as F
from mmpretrain.registry import BATCH_AUGMENTS

from .attention_utils import (attention_pass, cls_attention_grid,
                              head_class_weight, normalize_map,
                              patch_token_grid)
from .base import derangement
from .mix_plan import check_number
from .smmix import SMMix, region_swap_plan

__all__ = ['TdAttenMix', 'top_down_map', 'region_attention_lam']


def top_down_map(tokens: torch.Tensor, class_vec: torch.Tensor,
                 high: float = 0.7) -> torch.Tensor:
    """Label-driven relevance of every patch.

    The cosine similarity between each final patch token and the target
    class's classifier direction, clamped at 0, then thresholded like the
    official gaze map: ``(m - (high * max + (1 - high) * min)).clamp(0)``.

    Args:
        tokens (Tensor): ``[B, h, w, D]`` final patch tokens.
        class_vec (Tensor): ``[B, D]`` classifier direction of each label.
        high (float): Threshold position between min and max.
            Defaults to 0.7.

    Returns:
        Tensor: ``[B, h, w]`` non-negative map.
    """
    cos = F.cosine_similarity(
        tokens.float(), class_vec.float()[:, None, None, :], dim=-1)
    cos = cos.clamp(0, 1)
    flat = cos.flatten(1)
    hi = flat.max(1).values[:, None, None]
    lo = flat.min(1).values[:, None, None]
    return (cos - (high * hi + (1 - high) * lo)).clamp_min(0)


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
    *top-down* (label-driven) map and the *bottom-up* CLS attention of a
    no-grad, eval-mode pass of the bound model:
    ``S = w_td * TD + (1 - w_td) * BU`` (each normalised to sum 1), and the
    label weight mixes area and attention:
    ``lam = ratio * lam_area + (1 - ratio) * lam_attn`` with
    ``lam_attn = S_own(visible) / (S_own(visible) + S_partner(pasted))``.

    Implemented: region selection, the top-down/bottom-up balance and the
    area-attention label mixing (``ratio=0.5`` as the official code).
    Simplifications: the official top-down attention comes from a separate,
    gaze-trained AbSViT conditioned on the label; here the top-down map is
    the bound model's own label-conditioned relevance
    (:func:`top_down_map`: final patch tokens vs the classifier weight of the
    label, thresholded as the official gaze map), so no extra network or
    gaze data is needed. The attention label is computed per sample (the
    official code sums over the whole batch). The fine-grained token labels
    and consistency loss of the official training loop are not implemented.
    Pair it with Mixup through ``probs`` (official ``switch_prob=0.5``).

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
        use_td = self.top_down_weight > 0
        out = attention_pass(
            self.model.backbone, inputs, self.attn_layer, eval=True,
            trace_source=use_td)
        bottom_up = normalize_map(cls_attention_grid(out))
        if not use_td:
            return bottom_up
        if batch_score is None:
            raise ValueError(
                'TdAttenMix: the top-down map needs the labels; call it '
                'with batch_score (or set top_down_weight=0).')
        try:
            weight = head_class_weight(self.model)
        except ValueError as err:
            raise ValueError(
                f'TdAttenMix: top_down_weight={self.top_down_weight} needs a '
                f'linear classifier on the backbone tokens: {err}') from err
        if batch_score.shape[1] != weight.shape[0]:
            raise ValueError(
                f'TdAttenMix: batch_score has {batch_score.shape[1]} classes '
                f'but the head has {weight.shape[0]}.')
        class_vec = batch_score.float() @ weight.detach().float()
        top_down = normalize_map(top_down_map(patch_token_grid(out),
                                              class_vec))
        w = self.top_down_weight
        return w * top_down + (1 - w) * bottom_up

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
