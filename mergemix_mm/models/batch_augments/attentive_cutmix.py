"""Attentive-CutMix: the partner's most attended grid cells pasted in
place."""
from typing import Optional

import torch
import torch.nn.functional as F
from mmpretrain.registry import BATCH_AUGMENTS

from .attention_utils import (attention_pass, build_extractor,
                              cls_attention_grid, feature_saliency,
                              is_vit_backbone, module_on)
from .base import ModelAwareMixin, derangement
from .mix_plan import PlannedMix, check_alpha, check_number, sample_beta

__all__ = ['AttentiveCutMix']

_SALIENCY = ('auto', 'cls_attention', 'feature_mean')


@BATCH_AUGMENTS.register_module()
class AttentiveCutMix(ModelAwareMixin, PlannedMix):
    r"""Attentive-CutMix (`Attentive CutMix: An Enhanced Data Augmentation
    Approach for Deep Learning Based Image Classification
    <https://arxiv.org/abs/2003.13048>`_, ICASSP 2020).

    A feature extractor gives an attention map of the *partner* (source)
    image on a coarse grid; its ``k`` most attended cells are pasted onto
    the own image at the same places. The own label weight is the visible
    area ``1 - k / cells`` (exact pixel area when cells do not divide the
    image).

    The extractor is the bound model's backbone (default; a no-grad,
    eval-mode pass) or a configured, frozen backbone (``extractor=dict(...)``,
    e.g. a pretrained ResNet-50 as in the paper). Its map is the last-block
    CLS attention for ViTs (``'cls_attention'``) or the channel mean of the
    last feature map for CNNs (``'feature_mean'``, the paper's choice);
    ``'auto'`` picks by backbone type. ``grid_size`` pools the map to a
    coarser square grid (the paper's 7x7).

    Implemented from the paper (top-k cells of the source's attention,
    same-place paste, area label). ``top_k=None`` (default) draws
    :math:`\lambda \sim Beta(\alpha, \alpha)` and pastes
    ``clip(int(cells * lam), 1, cells)`` cells, as OpenMixup's CIFAR recipe
    (:math:`\alpha = 2`); ``top_k=6`` with ``grid_size=7`` is the paper's
    fixed setting.

    Args:
        alpha (float): Beta parameter when ``top_k`` is None, > 0.
            Defaults to 2.0.
        top_k (int, optional): Fixed number of pasted cells. Defaults to
            None.
        extractor (dict, optional): Backbone config of a frozen extractor.
            None uses the bound model's backbone. Defaults to None.
        saliency (str): ``'auto'``, ``'cls_attention'`` or
            ``'feature_mean'``. Defaults to ``'auto'``.
        grid_size (int, optional): Pool the map to ``grid_size`` cells per
            side. Defaults to None (native grid).
        attn_layer (int): Block of the ViT attention. Defaults to -1.
    """

    def __init__(self,
                 alpha: float = 2.0,
                 top_k: Optional[int] = None,
                 extractor: Optional[dict] = None,
                 saliency: str = 'auto',
                 grid_size: Optional[int] = None,
                 attn_layer: int = -1):
        self.alpha = check_alpha('AttentiveCutMix', alpha)
        self.top_k = None if top_k is None else check_number(
            'AttentiveCutMix', 'top_k', top_k, low=1, integer=True)
        if saliency not in _SALIENCY:
            raise ValueError(f'AttentiveCutMix: saliency={saliency!r} must '
                             f'be one of {_SALIENCY}.')
        self.saliency_mode = saliency
        self.grid_size = None if grid_size is None else check_number(
            'AttentiveCutMix', 'grid_size', grid_size, low=1, integer=True)
        self.attn_layer = check_number(
            'AttentiveCutMix', 'attn_layer', attn_layer, integer=True)
        self.extractor_cfg = extractor
        self._extractor = None if extractor is None else build_extractor(
            extractor, 'AttentiveCutMix', 'extractor')

    @property
    def extractor(self) -> torch.nn.Module:
        """The backbone whose attention picks the cells."""
        if self._extractor is not None:
            return self._extractor
        return self.model.backbone

    def saliency(self, inputs: torch.Tensor) -> torch.Tensor:
        """``[B, h, w]`` attention map of ``inputs``."""
        extractor = self.extractor
        if self._extractor is not None:
            extractor = module_on(extractor, inputs.device)
        mode = self.saliency_mode
        if mode == 'auto':
            mode = 'cls_attention' if is_vit_backbone(extractor) \
                else 'feature_mean'
        if mode == 'cls_attention':
            out = attention_pass(extractor, inputs, self.attn_layer,
                                 eval=True)
            sal = cls_attention_grid(out)
        else:
            sal = feature_saliency(extractor, inputs)
        if self.grid_size is not None:
            if self.grid_size > min(sal.shape[-2:]):
                raise ValueError(
                    f'AttentiveCutMix: grid_size={self.grid_size} is finer '
                    f'than the {sal.shape[-2]}x{sal.shape[-1]} attention '
                    'map.')
            sal = F.adaptive_avg_pool2d(sal[:, None], self.grid_size)[:, 0]
        return sal

    def build_mix(self,
                  inputs: torch.Tensor,
                  batch_score: Optional[torch.Tensor] = None) -> dict:
        """Attention of the partners and the pasted cells.

        Returns:
            dict: ``mask`` [B, 1, H, W] (0 on pasted cells), ``index`` [B],
            ``lam`` [B], ``cells`` [B, h, w] (1 = pasted), ``k``,
            ``saliency`` [B, h, w] (of each own image).
        """
        B, device = inputs.shape[0], inputs.device
        H, W = inputs.shape[-2:]
        sal = self.saliency(inputs)
        h, w = sal.shape[-2:]
        n_cells = h * w
        if self.top_k is None:
            k = min(max(1, int(n_cells * sample_beta(self.alpha))), n_cells)
        else:
            k = self.top_k
            if k > n_cells:
                raise ValueError(
                    f'AttentiveCutMix: top_k={k} exceeds the {h}x{w} = '
                    f'{n_cells} cells of the attention map.')
        index = derangement(B, device)
        top = sal[index].flatten(1).topk(k, dim=1).indices
        cells = torch.zeros(B, n_cells, device=device)
        cells.scatter_(1, top.to(device), 1.0)
        cells = cells.reshape(B, 1, h, w)
        pasted = F.interpolate(cells, size=(H, W), mode='nearest')
        mask = 1 - pasted
        return dict(
            mask=mask,
            index=index,
            lam=mask.flatten(1).mean(1),
            cells=cells[:, 0],
            k=k,
            saliency=sal)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(alpha={self.alpha}, top_k='
                f'{self.top_k}, saliency={self.saliency_mode!r}, grid_size='
                f'{self.grid_size}, extractor='
                f'{self.extractor_cfg is not None})')
