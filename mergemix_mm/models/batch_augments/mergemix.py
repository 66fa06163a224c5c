"""MergeMix: token-merge-guided mixup for vision transformers."""
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from mmpretrain.registry import BATCH_AUGMENTS

from ...utils.checks import check_bool, check_number
from ..tome import (SCHEDULE_COMPATS, ToMeOutput, check_cls_token,
                    forward_with_attention, recover, schedule_from_merge_num,
                    vit_geometry)
from .base import (MixRecord, ModelAwareMixin, check_batch, derangement,
                   mix_scores)

__all__ = ['MergeMix', 'mergemix_token_scores', 'topk_keep_mask',
           'rescale_lam', 'patch_mask_to_pixels']

_COMPAT = (None, 'openmixup', 'llava')


def mergemix_token_scores(out: ToMeOutput,
                          compat: Optional[str] = None) -> torch.Tensor:
    """Per-patch saliency from a ToMe forward (recovered to the patch grid).

    * ``compat=None`` (paper intent, ALGORITHM.md §10 A1): the CLS query row
      of block ``l``'s attention, averaged over heads, recovered with the
      source map of the tokens *entering* block ``l`` (the token space the
      attention lives in).
    * ``compat='openmixup'``: the official classification code: the
      *token -> CLS* column of block ``l``'s attention, summed over heads,
      gathered with the *final* source map (indices of the last block's token
      space used as rows of block ``l``'s attention).

    Args:
        out (ToMeOutput): Result of :func:`forward_with_attention` with
            ``attn_layer`` set (and ``trace_source=True`` for 'openmixup').
        compat (str, optional): None or ``'openmixup'``. Defaults to None.

    Returns:
        Tensor: ``[B, N]`` scores in patch (row-major grid) order.

    Raises:
        ValueError: If the backbone has no class token, or for an unknown
            ``compat``.
    """
    check_cls_token(out, 'MergeMix')
    p = out.num_extra_tokens
    if compat is None:
        cls_row = out.attn[:, :, 0, :].float().mean(1)
        return recover(cls_row, out.source_in[:, p:])
    if compat == 'openmixup':
        to_cls = out.attn[:, :, :, 0].float().sum(1)
        return recover(to_cls, out.source[:, p:])
    raise ValueError(f'compat={compat!r} has no patch-space scores')


def topk_keep_mask(scores: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Boolean mask of each row's ``k[b]`` highest scores.

    Ties are broken by position (stable sort), so the result is
    deterministic.

    Args:
        scores (Tensor): ``[B, N]`` scores (``-inf`` entries are never kept
            unless ``k`` exceeds the finite entries).
        k (Tensor): ``[B]`` number of entries to keep per row.

    Returns:
        Tensor: ``[B, N]`` bool, exactly ``k[b]`` True entries per row.
    """
    order = scores.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    arange = torch.arange(scores.shape[1], device=scores.device)
    ranks.scatter_(1, order, arange.expand_as(order))
    return ranks < k[:, None]


def rescale_lam(lam_mask: torch.Tensor, mu: float,
                tau: float = 1e-5) -> torch.Tensor:
    """MergeMix's label re-scaling (``lam_scale=True``).

    Draws ``z_i ~ N(mu, sigma_i = lam_mask_i)`` and min-max normalises over the
    batch: ``clip((z - min z) / (max z - min z + tau), 0, 1)``. As shown in
    ALGORITHM.md §4.5, with one shared ``lam_mask`` the result does not depend
    on ``mu``, the mask or ``lam``: it is min-max normalised standard-normal
    noise (and 0 everywhere when ``lam_mask == 0``).

    Args:
        lam_mask (Tensor): ``[B]`` kept fraction per sample.
        mu (float): Mean (merge ratio ``merge_num / N``).
        tau (float): Stabiliser. Defaults to 1e-5.

    Returns:
        Tensor: ``[B]`` re-scaled label weights in [0, 1].
    """
    z = mu + lam_mask * torch.randn_like(lam_mask)
    z = (z - z.min()) / (z.max() - z.min() + tau)
    return z.clamp(0, 1)


def patch_mask_to_pixels(mask: torch.Tensor,
                         patch_size: Tuple[int, int]) -> torch.Tensor:
    """Nearest upsampling of a ``[B, h, w]`` patch mask to ``[B, 1, H, W]``."""
    ph, pw = patch_size
    return mask.repeat_interleave(ph, dim=1).repeat_interleave(
        pw, dim=2)[:, None]


@BATCH_AUGMENTS.register_module()
class MergeMix(ModelAwareMixin):
    r"""MergeMix batch augment (`arXiv 2510.23479
    <https://arxiv.org/abs/2510.23479>`_).

    For each batch: draw :math:`\lambda \sim Beta(\alpha, \alpha)`; run the
    bound model's backbone once on the clean batch without gradients, with
    token merging (ToMe, ``merge_num`` tokens on the decreasing schedule);
    take the attention of block ``attn_layer`` and recover it to the patch
    grid; keep the :math:`k = \lfloor \lambda N \rfloor` most attended
    patches of every image and fill the rest from a partner image of the
    batch (a permutation without fixed points); mix the labels with the
    kept fraction, optionally re-scaled (``lam_scale``).

    Defaults follow ALGORITHM.md §10: the paper's CLS-row attention recovered
    with the matching source map; OpenMixup's re-scaling and batch-mean label
    weight (which produced the published numbers). ``compat`` reproduces the
    official codes' attention handling.

    Use it with :class:`~mergemix_mm.models.classifiers.MergeMixClassifier`
    (it binds the augment to the model); it may sit inside
    ``RandomBatchAugment`` with other augments and ``probs``.

    Args:
        alpha (float): Beta distribution parameter, > 0. Defaults to 1.0.
        attn_layer (int): 0-based block whose attention builds the mask;
            negative values count from the end. Defaults to -1 (last block).
        merge_num (int, optional): Tokens merged in total by the mask pass
            (decreasing ToMe schedule, inflection ``merge_inflect``). None
            means half of the patch tokens (the paper's 98 of 196); 0 turns
            merging off. Defaults to None.
        merge_inflect (float): Schedule inflection. Defaults to -0.5.
        lam_scale (bool): Re-scale the label weights (see
            :func:`rescale_lam`). Defaults to True.
        lam_reduction (str): ``'batch'`` gives every sample the batch-mean
            label weight (OpenMixup's loss); ``'sample'`` keeps each sample's
            own. Defaults to ``'batch'``.
        lam_margin (float): If ``lam <= lam_margin`` or
            ``lam >= 1 - lam_margin``, linear Mixup with ``lam`` is used
            instead of the mask (``mode='batch'`` only). Negative disables
            it. Defaults to -1.
        mask_leaked (bool): Keep the *least* attended ``N - k`` patches of the
            own image instead. Defaults to False.
        mode (str): ``'batch'`` draws one ``lam`` per batch (as the paper);
            ``'elem'`` one per sample. Defaults to ``'batch'``.
        compat (str, optional): None (paper intent), ``'openmixup'`` (final
            source map, token->CLS column, summed heads; no-self-pair
            retries accept a fixed point after 10 tries, as the official
            code) or ``'llava'`` (CLS row, top-k over merged tokens, then
            expanded; the label uses the realised kept area).
            Defaults to None.
        attn_eval_mode (bool): Run the mask pass in eval mode (no dropout /
            drop-path). Defaults to False (train mode, as the official code).
        schedule_compat (str, optional): Passed to
            :func:`~mergemix_mm.models.tome.schedule_from_merge_num`.
            Defaults to None.
    """

    #: ``MergeMixClassifier(aux_loss=...)`` adds the official recipe's
    #: auxiliary loss to MergeMix batches.
    takes_aux_loss = True

    def __init__(self,
                 alpha: float = 1.0,
                 attn_layer: int = -1,
                 merge_num: Optional[int] = None,
                 merge_inflect: float = -0.5,
                 lam_scale: bool = True,
                 lam_reduction: str = 'batch',
                 lam_margin: float = -1.0,
                 mask_leaked: bool = False,
                 mode: str = 'batch',
                 compat: Optional[str] = None,
                 attn_eval_mode: bool = False,
                 schedule_compat: Optional[str] = None):
        alpha = check_number('MergeMix', 'alpha', alpha, low=0, low_open=True)
        attn_layer = check_number(
            'MergeMix', 'attn_layer', attn_layer, integer=True)
        if merge_num is not None:
            merge_num = check_number(
                'MergeMix', 'merge_num', merge_num, low=0, integer=True)
        if lam_reduction not in ('batch', 'sample'):
            raise ValueError(f'MergeMix: lam_reduction={lam_reduction!r} '
                             "must be 'batch' or 'sample'.")
        if mode not in ('batch', 'elem'):
            raise ValueError(
                f"MergeMix: mode={mode!r} must be 'batch' or 'elem'.")
        if compat not in _COMPAT:
            raise ValueError(
                f'MergeMix: compat={compat!r} must be one of {_COMPAT}.')
        # Negative disables the margin; -1 is the documented off value.
        lam_margin = check_number(
            'MergeMix', 'lam_margin', lam_margin, high=0.5, high_open=True)
        if lam_margin >= 0 and mode == 'elem':
            raise ValueError(
                f"MergeMix: lam_margin={lam_margin} needs mode='batch' (the "
                'margin tests the one lam of a batch); set lam_margin=-1 '
                "with mode='elem'.")
        for name, value in (('lam_scale', lam_scale),
                            ('mask_leaked', mask_leaked),
                            ('attn_eval_mode', attn_eval_mode)):
            check_bool('MergeMix', name, value)
        merge_inflect = check_number('MergeMix', 'merge_inflect',
                                     merge_inflect, low=-1, high=1)
        if schedule_compat not in SCHEDULE_COMPATS:
            raise ValueError(f'MergeMix: schedule_compat={schedule_compat!r} '
                             f'must be one of {SCHEDULE_COMPATS}.')
        self.alpha = alpha
        self.attn_layer = attn_layer
        self.merge_num = merge_num
        self.merge_inflect = merge_inflect
        self.lam_scale = bool(lam_scale)
        self.lam_reduction = lam_reduction
        self.lam_margin = lam_margin
        self.mask_leaked = bool(mask_leaked)
        self.mode = mode
        self.compat = compat
        self.attn_eval_mode = bool(attn_eval_mode)
        self.schedule_compat = schedule_compat
        self._schedules: Dict[Tuple[int, int, int], list] = {}

    # ------------------------------------------------------------------
    # geometry and schedule
    def _geometry(self, inputs: torch.Tensor):
        backbone = self.model.backbone
        geo = vit_geometry(backbone)  # ValueError for non-ViT backbones
        ph, pw = geo.patch_size
        H, W = inputs.shape[-2:]
        if H % ph or W % pw:
            raise ValueError(
                f'MergeMix: input size {H}x{W} is not divisible by the '
                f"backbone's patch size {ph}x{pw}.")
        if not -geo.num_layers <= self.attn_layer < geo.num_layers:
            raise ValueError(
                f'MergeMix: attn_layer={self.attn_layer} is out of range for '
                f'a {geo.num_layers}-block backbone.')
        return geo, (H // ph, W // pw)

    def _schedule(self, num_layers: int, num_patches: int,
                  num_extra: int) -> list:
        key = (num_layers, num_patches, num_extra)
        if key not in self._schedules:
            merge_num = (num_patches // 2
                         if self.merge_num is None else self.merge_num)
            try:
                self._schedules[key] = schedule_from_merge_num(
                    num_layers,
                    merge_num,
                    self.merge_inflect,
                    compat=self.schedule_compat,
                    num_tokens=num_patches + num_extra,
                    num_protected=num_extra)
            except ValueError as err:
                raise ValueError(
                    f'MergeMix: merge_num={merge_num} cannot be merged by '
                    f'{num_layers} blocks from {num_patches} patch tokens: '
                    f'{err}') from err
        return self._schedules[key]

    # ------------------------------------------------------------------
    def _draw_lam(self, batch_size: int, device) -> torch.Tensor:
        size = batch_size if self.mode == 'elem' else 1
        lam = np.random.beta(self.alpha, self.alpha, size=size)
        lam = torch.as_tensor(lam, dtype=torch.float32, device=device)
        return lam.expand(batch_size).clone()

    def _partner(self, batch_size: int, device) -> torch.Tensor:
        if self.compat == 'openmixup':
            arange = torch.arange(batch_size, device=device)
            for _ in range(10):
                perm = torch.randperm(batch_size).to(device)
                if not bool((perm == arange).any()):
                    break
            return perm  # accepted even with a fixed point, as the code
        return derangement(batch_size, device)

    @torch.no_grad()
    def _saliency_pass(self, inputs: torch.Tensor, r_list: list,
                       attn_layer: int) -> ToMeOutput:
        backbone = self.model.backbone
        was_training = backbone.training
        if self.attn_eval_mode:
            backbone.eval()
        try:
            return forward_with_attention(
                backbone,
                inputs,
                attn_layer=attn_layer,
                r_list=r_list,
                prop_attn=False,
                trace_source=self.compat == 'openmixup',
                # only 'openmixup' reads the final source map; otherwise the
                # blocks after attn_layer cannot change the mask
                stop_at_attn_layer=self.compat != 'openmixup')
        finally:
            if self.attn_eval_mode and was_training:
                backbone.train()

    def build_mix(self, inputs: torch.Tensor) -> dict:
        """Compute MergeMix's mask, partners and label weights for a batch.

        Args:
            inputs (Tensor): Normalised images ``[B, C, H, W]`` (B >= 2).

        Returns:
            dict: ``mask`` [B, 1, H, W] in {0, 1} (1 = pixel of the own
            image), ``index`` [B] partner indices, ``lam`` [B] label weight of
            the own image (after re-scaling and reduction), ``lam_mask`` [B]
            kept pixel fraction, ``lam_draw`` [B] the drawn lambda,
            ``scores`` [B, N] patch saliency (None for ``'llava'``),
            ``patch_mask`` [B, h, w], ``linear`` bool (``lam_margin`` branch,
            then ``mask`` is None).
        """
        B, device = inputs.shape[0], inputs.device
        geo, (h, w) = self._geometry(inputs)
        N = h * w
        p = geo.num_extra_tokens
        attn_layer = self.attn_layer % geo.num_layers
        r_list = self._schedule(geo.num_layers, N, p)
        lam = self._draw_lam(B, device)
        index = self._partner(B, device)
        merge_num = sum(r_list)

        lam0 = float(lam[0])
        if self.mode == 'batch' and (lam0 <= self.lam_margin
                                     or lam0 >= 1 - self.lam_margin):
            lam_mask = lam
            result = dict(mask=None, patch_mask=None, scores=None,
                          linear=True)
        else:
            out = self._saliency_pass(inputs, r_list, attn_layer)
            if not bool(torch.isfinite(out.attn).all()):
                bad = (~torch.isfinite(out.attn)).flatten(1).any(1).nonzero()
                raise RuntimeError(
                    f'MergeMix: the attention of block {attn_layer} is not '
                    f'finite for samples {bad.flatten().tolist()}; refusing '
                    'to build a mask from it.')
            if self.compat == 'llava':
                check_cls_token(out, 'MergeMix')
                scores = None
                merged = out.attn[:, :, 0, :].float().sum(1)
                merged[:, :p] = float('-inf')
                n_merged = merged.shape[1] - p
                k = torch.floor(lam * n_merged).long()
                keep_merged = topk_keep_mask(merged, k).float()
                keep = recover(keep_merged, out.source_in[:, p:]) > 0.5
                if self.mask_leaked:
                    keep = ~keep
            else:
                scores = mergemix_token_scores(out, self.compat)
                k = torch.floor(lam * N).long()
                keep = topk_keep_mask(scores, k)
                if self.mask_leaked:
                    keep = ~keep
            patch_mask = keep.reshape(B, h, w).to(inputs.dtype)
            lam_mask = keep.float().mean(1)
            result = dict(
                mask=patch_mask_to_pixels(patch_mask, geo.patch_size),
                patch_mask=patch_mask,
                scores=scores,
                linear=False)
        if self.lam_scale:
            lam_label = rescale_lam(lam_mask.float(), merge_num / N)
        else:
            lam_label = lam_mask.float()
        if self.lam_reduction == 'batch':
            lam_label = lam_label.mean().expand(B).clone()
        result.update(index=index, lam=lam_label, lam_mask=lam_mask,
                      lam_draw=lam)
        return result

    def __call__(self, inputs: torch.Tensor,
                 batch_score: torch.Tensor) -> Tuple[torch.Tensor,
                                                     torch.Tensor]:
        """Mix a batch.

        Args:
            inputs (Tensor): Normalised images ``[B, C, H, W]``.
            batch_score (Tensor): One-hot (or soft) scores ``[B, C]``.

        Returns:
            tuple: Mixed inputs and mixed float scores (rows sum to 1 when
            the input rows do).
        """
        scores = batch_score.float()
        self._set_record(None)
        if not check_batch('MergeMix', inputs, batch_score):
            return inputs, scores
        mix = self.build_mix(inputs)
        index, lam = mix['index'], mix['lam']
        if mix['linear']:
            lam_in = mix['lam_draw'].to(inputs.dtype)[:, None, None, None]
            mixed = lam_in * inputs + (1 - lam_in) * inputs[index]
        else:
            mask = mix['mask']
            mixed = mask * inputs + (1 - mask) * inputs[index]
        self._set_record(
            MixRecord(
                source=self,
                clean_inputs=inputs,
                clean_scores=scores,
                index=index,
                lam=lam,
                mask=mix['mask'],
                extra=dict(lam_mask=mix['lam_mask'])))
        return mixed, mix_scores(scores, index, lam)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(alpha={self.alpha}, '
                f'attn_layer={self.attn_layer}, merge_num={self.merge_num}, '
                f'lam_scale={self.lam_scale}, '
                f'lam_reduction={self.lam_reduction!r}, mode={self.mode!r}, '
                f'compat={self.compat!r})')
