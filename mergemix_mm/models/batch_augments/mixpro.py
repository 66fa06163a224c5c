"""MixPro: MaskMix (random grid of cells) with progressive attention
labelling from the training forward (or, with ``compat='openmixup'``, from
a no-grad pass on the clean batch)."""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmpretrain.registry import BATCH_AUGMENTS

from ...utils.checks import check_bool
from ..losses.mixed_label_ce import smooth_targets
from ..tome import ToMeOutput, forward_with_attention, vit_geometry
from .attention_utils import attention_pass, cls_attention_grid
from .base import MixRecord, ModelAwareMixin, check_batch, derangement, \
    mix_scores
from .box_utils import cells_to_pixels, downsample_mask
from .mix_plan import PlannedMix, check_alpha, check_number, sample_beta

__all__ = ['MixPro', 'progressive_attention_lam']

_COMPAT = (None, 'openmixup')


def progressive_attention_lam(attn: torch.Tensor, keep_mask: torch.Tensor,
                              lam_area: torch.Tensor,
                              similarity: torch.Tensor) -> torch.Tensor:
    r"""MixPro's progressive attention labelling (PAL).

    :math:`\lambda_{attn} = \sum M a / \sum a` with :math:`M` the own cells
    on the patch grid and :math:`a` the CLS attention of the mixed image;
    :math:`\lambda = s \lambda_{attn} + (1 - s) \lambda_{area}` with
    :math:`s` the (detached) cosine similarity between the area-mixed target
    and the model's prediction.

    Args:
        attn (Tensor): ``[B, h, w]`` attention.
        keep_mask (Tensor): ``[B, 1, H, W]``, 1 = own pixel.
        lam_area (Tensor): ``[B]``.
        similarity (Tensor): ``[B]`` in [0, 1].

    Returns:
        Tensor: ``[B]`` float32.
    """
    attn = attn.float()
    own = downsample_mask(keep_mask, attn.shape[-2:])
    w_own = (own * attn).flatten(1).sum(1)
    total = attn.flatten(1).sum(1)
    lam_area = lam_area.float().to(attn.device)
    lam_attn = torch.where(total > 0, w_own / total.clamp_min(1e-12),
                           lam_area)
    s = similarity.float()
    return s * lam_attn + (1 - s) * lam_area


@BATCH_AUGMENTS.register_module()
class MixPro(ModelAwareMixin, PlannedMix):
    r"""MixPro (`MixPro: Data Augmentation with MaskMix and Progressive
    Attention Labeling for Vision Transformer
    <https://arxiv.org/abs/2304.12043>`_, ICLR 2023).

    **MaskMix** (in the batch augment): draw :math:`\lambda \sim Beta(\alpha,
    \alpha)`; cut the image into a grid of ``mask_patch_size`` pixel cells
    (a multiple of the model's patch size, ``ceil(H / m)`` cells per side);
    for every sample, ``ceil(lam * cells)`` random cells show the own image
    and the rest a partner (a permutation without fixed points). The returned
    scores use the visible area.

    **Progressive attention labelling** (in the training forward, through
    :class:`~mergemix_mm.models.classifiers.MergeMixClassifier` and
    :meth:`forward_and_rescore`): the last block's CLS attention of the
    mixed image gives :math:`\lambda_{attn}`, the share of attention on the
    own cells; the cosine similarity :math:`s` between the area-mixed target
    and the model's softmax prediction (detached) mixes it with the area:
    :math:`\lambda = s \lambda_{attn} + (1 - s) \lambda_{area}`
    (:func:`progressive_attention_lam`). By default no extra forward is run
    (see ``compat`` for OpenMixup's clean-batch pass).

    Implemented from the paper and the official code (cell law, PAL with the
    cosine-similarity progressive factor). Differences: the area term is the
    exact visible pixel area (the official code uses the cell count, which
    differs when ``H`` is not a multiple of ``mask_patch_size``), the
    similarity is detached, and label smoothing of the *loss* is left to the
    head. The target the similarity compares with is smoothed as in the
    official code (its ``mix_targets`` use ``MODEL.LABEL_SMOOTHING``, 0.1)
    and in OpenMixup (``smoothing=0.1``): ``similarity_smoothing``.

    ``compat='openmixup'`` reproduces OpenMixup's port (commit 37e1372), which
    produced its published MixPro numbers:

    * the attention comes from an extra no-grad forward of the backbone on
      the *clean* batch, before mixing, in the backbone's current mode
      (train mode during training, as OpenMixup): block ``attn_layer``, CLS
      query row, mean over heads; :math:`\lambda_{attn}` is the share of each
      image's own clean attention that falls on the cells where it stays;
    * the area term is the cell count share ``ceil(lam * cells) / cells``
      (not the visible pixel area);
    * :math:`s` compares the prediction of the training forward on the mixed
      batch with the area-mixed target built from smoothed labels (as by
      default);
    * the per-sample :math:`\lambda` is averaged over the batch (OpenMixup's
      head multiplies batch-mean loss terms by the ``[N, 1]`` weights, and
      its loss parser averages them), so every row of the target uses the
      batch mean (the per-sample values stay in
      ``record.extra['lam_pal']``);
    * the partner is a plain random permutation (a sample may be paired with
      itself).

    The training forward itself is not changed (no attention is read from
    it). OpenMixup's recipe pairs MixPro with Mixup:
    ``augments=[MixPro(1.0), Mixup(1.0)], probs=[0.8, 0.2]``.

    Args:
        alpha (float): Beta parameter, > 0. Defaults to 1.0.
        mask_patch_size (int): Cell size in pixels, a multiple of the
            backbone's patch size. Defaults to 64 (DeiT at 224 px).
        attn_layer (int): Block of the labelling attention. Defaults to -1.
        attention_label (bool): Use PAL; False keeps the area labels (plain
            MaskMix, which also trains under mmpretrain's
            ``ImageClassifier``). Defaults to True.
        compat (str, optional): None (paper and official MixPro code) or
            ``'openmixup'`` (OpenMixup's port, see above). Defaults to None.
        similarity_smoothing (float): Label smoothing ``eps`` of the
            area-mixed target that :math:`s` compares the prediction with
            (``(1 - eps) y + eps / K``), in ``[0, 1)``. Defaults to 0.1, the
            value of the official code and OpenMixup.
    """

    needs_train_forward = True

    def __init__(self,
                 alpha: float = 1.0,
                 mask_patch_size: int = 64,
                 attn_layer: int = -1,
                 attention_label: bool = True,
                 compat: Optional[str] = None,
                 similarity_smoothing: float = 0.1):
        if compat not in _COMPAT:
            raise ValueError(
                f'MixPro: compat={compat!r} must be one of {_COMPAT}.')
        self.compat = compat
        self.similarity_smoothing = check_number(
            'MixPro', 'similarity_smoothing', similarity_smoothing, low=0,
            high=1, high_open=True)
        self.alpha = check_alpha('MixPro', alpha)
        self.mask_patch_size = check_number(
            'MixPro', 'mask_patch_size', mask_patch_size, low=1, integer=True)
        self.attn_layer = check_number(
            'MixPro', 'attn_layer', attn_layer, integer=True)
        self.attention_label = check_bool('MixPro', 'attention_label',
                                          attention_label)
        # without PAL nothing is re-scored: plain MaskMix, which mmpretrain's
        # ImageClassifier can train too
        self.needs_train_forward = self.attention_label

    def _check_cells(self, img_size: Tuple[int, int]) -> None:
        m = self.mask_patch_size
        ph, pw = vit_geometry(self.model.backbone).patch_size
        if m % ph or m % pw:
            raise ValueError(
                f'MixPro: mask_patch_size={m} must be a multiple of the '
                f"backbone's patch size {ph}x{pw}.")
        if m > min(img_size):
            raise ValueError(
                f'MixPro: mask_patch_size={m} is larger than the '
                f'{img_size[0]}x{img_size[1]} images.')

    def build_mix(self,
                  inputs: torch.Tensor,
                  batch_score: Optional[torch.Tensor] = None) -> dict:
        """MaskMix decisions.

        Returns:
            dict: ``mask`` [B, 1, H, W] (1 = own cell), ``index`` [B],
            ``lam`` [B] (own visible area; own cell share with
            ``compat='openmixup'``), ``cells`` [B, nh, nw]; with
            ``compat='openmixup'`` and ``attention_label``, also
            ``saliency`` [B, h, w] (:meth:`clean_attention`).
        """
        B, device = inputs.shape[0], inputs.device
        H, W = inputs.shape[-2:]
        self._check_cells((H, W))
        m = self.mask_patch_size
        nh, nw = math.ceil(H / m), math.ceil(W / m)
        total = nh * nw
        count = min(math.ceil(sample_beta(self.alpha) * total), total)
        ranks = torch.rand(B, total).argsort(1).argsort(1)
        cells = (ranks < count).float().reshape(B, nh, nw).to(device)
        mask = cells_to_pixels(cells, m, m, H, W)
        if self.compat == 'openmixup':
            index = torch.randperm(B).to(device)  # fixed points allowed
            lam = cells.flatten(1).mean(1)
        else:
            index = derangement(B, device)
            lam = mask.flatten(1).mean(1)
        plan = dict(mask=mask, index=index, lam=lam, cells=cells)
        if self.compat == 'openmixup' and self.attention_label:
            plan['saliency'] = self.clean_attention(inputs)
        return plan

    def clean_attention(self, inputs: torch.Tensor) -> torch.Tensor:
        """OpenMixup's PAL attention: a no-grad pass of the bound backbone on
        the clean images, in its current mode (train mode in training).

        Returns:
            Tensor: ``[B, h, w]`` CLS attention of block ``attn_layer``
            (head mean, see :func:`cls_attention_grid`).
        """
        out = attention_pass(
            self.model.backbone, inputs, self.attn_layer, eval=False)
        return cls_attention_grid(out)

    def __call__(self, inputs: torch.Tensor, batch_score: torch.Tensor
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
        """MaskMix the batch and leave the record for PAL.

        With ``compat='openmixup'`` (and ``attention_label``), the bound
        backbone runs once on the clean batch without gradients
        (:meth:`clean_attention`); its map goes to
        ``record.extra['clean_attn']`` ([B, h, w]).

        Raises:
            RuntimeError: If the augment is not bound to a model.
        """
        scores = batch_score.float()
        self._set_record(None)
        if not check_batch('MixPro', inputs, batch_score):
            return inputs, scores
        plan = self.build_mix(inputs)
        index = plan['index']
        extra = {}
        if 'saliency' in plan:
            extra['clean_attn'] = plan['saliency']
        mixed = self.apply_mix(inputs, inputs[index], plan)
        if self.attention_label:
            self._set_record(
                MixRecord(
                    source=self,
                    clean_inputs=inputs,
                    clean_scores=scores,
                    index=index,
                    lam=plan['lam'],
                    mask=plan['mask'],
                    extra=extra))
        return mixed, mix_scores(scores, index, plan['lam'])

    def attention_lam(self, out: Optional[ToMeOutput], logits: torch.Tensor,
                      record: MixRecord) -> torch.Tensor:
        """PAL label weights from a forward's attention and logits.

        Args:
            out (ToMeOutput, optional): The training forward with attention
                (unused with ``compat='openmixup'``, which reads
                ``record.extra['clean_attn']``, or runs
                :meth:`clean_attention` on ``record.clean_inputs`` for a
                record without it).
            logits (Tensor): ``[B, K]`` prediction of the training forward.
            record (MixRecord): The record of the call.

        Returns:
            Tensor: ``[B]`` per-sample weights (before any batch mean).
        """
        scores = smooth_targets(record.clean_scores,
                                record.clean_scores.shape[1],
                                self.similarity_smoothing)
        if self.compat == 'openmixup':
            attn = record.extra.get('clean_attn')
            if attn is None:
                attn = self.clean_attention(record.clean_inputs)
        else:
            attn = cls_attention_grid(out)
        target = mix_scores(scores, record.index, record.lam)
        prob = F.softmax(logits.detach().float(), dim=-1)
        sim = F.cosine_similarity(target, prob, dim=1).clamp(0, 1)
        return progressive_attention_lam(attn, record.mask, record.lam, sim)

    def forward_and_rescore(self, model: torch.nn.Module,
                            inputs: torch.Tensor, record: MixRecord
                            ) -> Tuple[tuple, torch.Tensor]:
        """The training forward on the mixed batch and its PAL scores.

        Returns:
            tuple: ``(feats, scores)`` (feats with gradients, as
            ``extract_feat``). ``record.lam`` is updated to the PAL weights
            (the area weights move to ``record.extra['lam_area']``), so a
            loss with ``lam_reduction='batch'`` uses them too. With
            ``compat='openmixup'`` they are the batch mean of the per-sample
            weights (kept in ``record.extra['lam_pal']``).
        """
        if self.compat == 'openmixup':
            out = None
            feats = model.backbone(inputs)
        else:
            out = forward_with_attention(
                model.backbone, inputs, attn_layer=self.attn_layer,
                trace_source=False)
            feats = out.outs
        if getattr(model, 'with_neck', False):
            feats = model.neck(feats)
        with torch.no_grad():
            logits = model.head(feats)
        lam = self.attention_lam(out, logits, record)
        if self.compat == 'openmixup':
            record.extra['lam_pal'] = lam
            lam = lam.mean().expand_as(lam).clone()
        record.extra['lam_area'] = record.lam
        record.lam = lam
        return feats, mix_scores(record.clean_scores, record.index, lam)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(alpha={self.alpha}, mask_patch_size='
                f'{self.mask_patch_size}, attention_label='
                f'{self.attention_label}, compat={self.compat!r})')
