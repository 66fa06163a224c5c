"""TokenMix: token-level block masks with content-based labels."""
import math
import random
from typing import Optional, Tuple

import numpy as np
import torch
from mmpretrain.registry import BATCH_AUGMENTS

from ..tome import vit_geometry
from .attention_utils import (attention_pass, build_extractor,
                              cls_attention_grid, module_on, normalize_map)
from .base import ModelAwareMixin, derangement
from .box_utils import cells_to_pixels
from .mix_plan import PlannedMix, check_alpha, check_number, sample_beta

__all__ = ['TokenMix', 'block_token_mask', 'random_token_mask']

_MASK_TYPES = ('block', 'random')
_LABELS = ('attention', 'area')


def block_token_mask(grid: Tuple[int, int],
                     num_masked: int,
                     min_aspect: float = 0.3,
                     max_attempts: int = 10) -> np.ndarray:
    """BEiT-style block-wise mask: random rectangles of tokens until about
    ``num_masked`` tokens are covered.

    Each step proposes a rectangle with a uniform area in
    ``[1, tokens still needed]`` and a log-uniform aspect in
    ``[min_aspect, 1 / min_aspect]`` at a uniform position; it is accepted
    when it adds between 1 and the needed number of new tokens. After
    ``max_attempts`` failed proposals the mask is returned as is.

    Args:
        grid (tuple[int, int]): Token grid ``(h, w)``.
        num_masked (int): Target number of masked tokens.
        min_aspect (float): Smallest aspect ratio. Defaults to 0.3.
        max_attempts (int): Proposals per step. Defaults to 10.

    Returns:
        np.ndarray: ``[h, w]`` bool, True = masked.
    """
    h, w = grid
    mask = np.zeros((h, w), dtype=bool)
    log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
    count = 0
    while count < num_masked:
        budget = num_masked - count
        added = 0
        for _ in range(max_attempts):
            area = random.uniform(1, budget)
            aspect = math.exp(random.uniform(*log_aspect))
            bh = int(round(math.sqrt(area * aspect)))
            bw = int(round(math.sqrt(area / aspect)))
            if 0 < bh < h and 0 < bw < w:
                top = random.randint(0, h - bh)
                left = random.randint(0, w - bw)
                region = mask[top:top + bh, left:left + bw]
                new = bh * bw - int(region.sum())
                if 0 < new <= budget:
                    region[...] = True
                    added = new
            if added:
                break
        if not added:
            break
        count += added
    return mask


def random_token_mask(grid: Tuple[int, int], num_masked: int) -> np.ndarray:
    """``num_masked`` tokens chosen uniformly at random (``[h, w]`` bool)."""
    h, w = grid
    flat = np.zeros(h * w, dtype=bool)
    flat[np.random.permutation(h * w)[:num_masked]] = True
    return flat.reshape(h, w)


@BATCH_AUGMENTS.register_module()
class TokenMix(ModelAwareMixin, PlannedMix):
    r"""TokenMix (`TokenMix: Rethinking Image Mixing for Data Augmentation in
    Vision Transformers <https://arxiv.org/abs/2207.08409>`_, ECCV 2022).

    Mixing happens at token granularity: a block-wise mask (random
    rectangles of patches, BEiT-style, :func:`block_token_mask`) or a random
    token mask marks ``min(N, int(mask_ratio N) + minimum_tokens)`` patches,
    which show the partner image (a permutation without fixed points); one
    mask per batch. The label is *content-based*: with a neural activation
    map :math:`A` of each clean image (the CLS attention of a teacher, summed
    to 1), ``s_own = sum_visible A_own`` and ``s_partner = sum_masked
    A_partner``; the own weight is ``s_own / (s_own + s_partner)``.

    Implemented from the paper and the official code: mask generator,
    ``mask_ratio=0.5`` with ``minimum_tokens`` (one grid row by default, the
    official 14 at 14x14) and the activation-map label. Differences: the
    official activation maps are pre-computed class-activation label maps
    of a strong pretrained teacher (ReLabel/TokenLabeling); here ``teacher``
    is a configured backbone, or by default the bound model itself (a
    no-grad, eval-mode pass on the clean batch, CLS attention of the last
    block). The official target ``s_own * y_own + s_partner * y_partner`` is
    normalised to sum 1. ``alpha`` optionally draws the ratio as
    ``1 - Beta(alpha, alpha)`` (OpenMixup). Pair it with Mixup through
    ``probs`` (OpenMixup: ``[0.9, 0.1]``).

    Args:
        mask_type (str): ``'block'`` or ``'random'``. Defaults to
            ``'block'``.
        mask_ratio (float): Partner token share before ``minimum_tokens``,
            in [0, 1]. Defaults to 0.5.
        alpha (float, optional): If set, ``mask_ratio`` is drawn per batch
            as ``1 - Beta(alpha, alpha)``. Defaults to None.
        minimum_tokens (int, optional): Tokens added to the partner share;
            None = one row of the patch grid. Defaults to None.
        min_aspect (float): Smallest block aspect ratio, in (0, 1].
            Defaults to 0.3.
        label (str): ``'attention'`` (content-based) or ``'area'``.
            Defaults to ``'attention'``.
        teacher (dict, optional): Backbone config of a frozen teacher ViT
            (e.g. with a ``Pretrained`` init_cfg). None uses the bound model.
            Defaults to None.
        attn_layer (int): Teacher block whose attention is the activation
            map. Defaults to -1.
    """

    def __init__(self,
                 mask_type: str = 'block',
                 mask_ratio: float = 0.5,
                 alpha: Optional[float] = None,
                 minimum_tokens: Optional[int] = None,
                 min_aspect: float = 0.3,
                 label: str = 'attention',
                 teacher: Optional[dict] = None,
                 attn_layer: int = -1):
        if mask_type not in _MASK_TYPES:
            raise ValueError(f'TokenMix: mask_type={mask_type!r} must be one '
                             f'of {_MASK_TYPES}.')
        if label not in _LABELS:
            raise ValueError(
                f'TokenMix: label={label!r} must be one of {_LABELS}.')
        self.mask_type = mask_type
        self.mask_ratio = float(
            check_number('TokenMix', 'mask_ratio', mask_ratio, low=0,
                         high=1))
        self.alpha = None if alpha is None else check_alpha('TokenMix', alpha)
        self.minimum_tokens = None if minimum_tokens is None else \
            check_number('TokenMix', 'minimum_tokens', minimum_tokens, low=0,
                         integer=True)
        self.min_aspect = float(
            check_number('TokenMix', 'min_aspect', min_aspect, low=0,
                         high=1, low_open=True))
        self.label = label
        self.attn_layer = check_number(
            'TokenMix', 'attn_layer', attn_layer, integer=True)
        self.teacher_cfg = teacher
        self._teacher = None if teacher is None else build_extractor(
            teacher, 'TokenMix', 'teacher')

    @property
    def teacher(self) -> torch.nn.Module:
        """The backbone giving the activation maps and the patch grid."""
        if self._teacher is not None:
            return self._teacher
        return self.model.backbone

    def _grid(self, inputs: torch.Tensor):
        ph, pw = vit_geometry(self.teacher).patch_size
        H, W = inputs.shape[-2:]
        if H % ph or W % pw:
            raise ValueError(
                f'TokenMix: input size {H}x{W} is not divisible by the '
                f'patch size {ph}x{pw}.')
        return (ph, pw), (H // ph, W // pw)

    def num_masked(self, grid: Tuple[int, int]) -> int:
        """Target partner tokens for a ``(h, w)`` grid (ratio drawn now when
        ``alpha`` is set)."""
        h, w = grid
        ratio = self.mask_ratio if self.alpha is None else \
            1 - sample_beta(self.alpha)
        extra = w if self.minimum_tokens is None else self.minimum_tokens
        return min(h * w, int(ratio * h * w) + extra)

    def activation_map(self, inputs: torch.Tensor) -> torch.Tensor:
        """``[B, h, w]`` activation map of the clean images (sums to 1)."""
        teacher = module_on(self.teacher, inputs.device) \
            if self._teacher is not None else self.teacher
        out = attention_pass(teacher, inputs, self.attn_layer, eval=True)
        return normalize_map(cls_attention_grid(out))

    def build_mix(self,
                  inputs: torch.Tensor,
                  batch_score: Optional[torch.Tensor] = None) -> dict:
        """Token mask, partners and content-based label weights.

        Returns:
            dict: ``mask`` [B, 1, H, W] (1 = own token), ``index`` [B],
            ``lam`` [B], ``lam_area`` [B], ``token_mask`` [h, w] bool
            (True = partner), ``activation`` [B, h, w] or None.
        """
        B, device = inputs.shape[0], inputs.device
        H, W = inputs.shape[-2:]
        (ph, pw), grid = self._grid(inputs)
        n = self.num_masked(grid)
        if self.mask_type == 'block':
            token_mask = block_token_mask(grid, n, self.min_aspect)
        else:
            token_mask = random_token_mask(grid, n)
        masked = torch.from_numpy(token_mask).to(device)
        own = (~masked).float()
        mask = cells_to_pixels(own[None], ph, pw, H, W).expand(B, 1, H, W)
        index = derangement(B, device)
        lam_area = own.mean().expand(B).clone()
        act = None
        lam = lam_area
        if self.label == 'attention':
            act = self.activation_map(inputs)
            s_own = (act * own).flatten(1).sum(1)
            s_partner = (act[index] * masked.float()).flatten(1).sum(1)
            total = s_own + s_partner
            lam = torch.where(total > 0, s_own / total.clamp_min(1e-12),
                              lam_area)
        return dict(
            mask=mask,
            index=index,
            lam=lam,
            lam_area=lam_area,
            token_mask=masked,
            activation=act)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(mask_type={self.mask_type!r}, '
                f'mask_ratio={self.mask_ratio}, alpha={self.alpha}, '
                f'minimum_tokens={self.minimum_tokens}, label='
                f'{self.label!r}, teacher={self.teacher_cfg is not None})')
