"""TransMix: CutMix whose label weight is re-read from the training
forward's attention."""
from typing import Optional, Tuple

import torch
from mmpretrain.registry import BATCH_AUGMENTS

from ..tome import ToMeOutput, forward_with_attention
from .attention_utils import cls_attention_grid
from .base import MixRecord, ModelAwareMixin, check_batch, derangement, \
    mix_scores
from .box_utils import box_area, box_keep_mask, cutmix_box, downsample_mask
from .mix_plan import PlannedMix, check_alpha, check_number, sample_beta

__all__ = ['TransMix', 'transmix_lam']


def transmix_lam(attn: torch.Tensor, keep_mask: torch.Tensor,
                 lam_area: torch.Tensor, ratio: float) -> torch.Tensor:
    r"""TransMix's label weight of the own image.

    With :math:`a` the CLS attention over the patches and :math:`M_b` the
    pasted (partner) box downsampled to the patch grid by nearest
    resizing: :math:`w_{in} = \sum M_b a`, :math:`w_{out} = \sum (1 - M_b) a`,
    :math:`\lambda_{attn} = w_{out} / (w_{in} + w_{out})` and
    :math:`\lambda = r \lambda_{area} + (1 - r) \lambda_{attn}`.

    Args:
        attn (Tensor): ``[B, h, w]`` attention on the mixed images.
        keep_mask (Tensor): ``[B, 1, H, W]`` pixel mask, 1 = own image.
        lam_area (Tensor): ``[B]`` own visible area.
        ratio (float): Weight :math:`r` of the area term.

    Returns:
        Tensor: ``[B]`` float32 label weights (``lam_area`` where the
        attention is all zero).
    """
    attn = attn.float()
    pasted = 1 - downsample_mask(keep_mask, attn.shape[-2:])
    w_in = (pasted * attn).flatten(1).sum(1)
    w_out = ((1 - pasted) * attn).flatten(1).sum(1)
    total = w_in + w_out
    lam_area = lam_area.float().to(attn.device)
    lam_attn = torch.where(total > 0, w_out / total.clamp_min(1e-12),
                           lam_area)
    return ratio * lam_area + (1 - ratio) * lam_attn


@BATCH_AUGMENTS.register_module()
class TransMix(ModelAwareMixin, PlannedMix):
    r"""TransMix (`TransMix: Attend to Mix for Vision Transformers
    <https://arxiv.org/abs/2111.09833>`_, CVPR 2022), as OpenMixup runs it.

    The batch augment performs CutMix (:math:`\lambda \sim Beta(\alpha,
    \alpha)`, box sides ``int(H sqrt(1 - lam))``, uniform centre, clipped,
    one box per batch, partners without fixed points) and returns the scores
    mixed with the box area. It also leaves a
    :class:`~mergemix_mm.models.batch_augments.base.MixRecord`;
    :class:`~mergemix_mm.models.classifiers.MergeMixClassifier` then calls
    :meth:`forward_and_rescore`, which runs the *training* forward (with
    gradients) through the functional ToMe entry point, reads the last
    block's CLS attention and replaces the labels with
    :func:`transmix_lam`: ``ratio * lam_area + (1 - ratio) * lam_attn``.
    ``ratio=0.5`` is OpenMixup's default (ALGORITHM.md §9.4); ``ratio=0``
    is the original paper (attention only). No extra forward is run.

    Use it with ``model.type='MergeMixClassifier'`` (calling it unbound
    raises). OpenMixup's CIFAR recipe pairs it with Mixup:
    ``augments=[Mixup(0.8), TransMix(1.0)], probs=[0.2, 0.8]``.

    Args:
        alpha (float): Beta parameter, > 0. Defaults to 1.0.
        ratio (float): Weight of the area term in [0, 1]. Defaults to 0.5.
        attn_layer (int): Block whose attention re-weights the labels,
            0-based, negative from the end. Defaults to -1 (last block).
    """

    needs_train_forward = True

    def __init__(self,
                 alpha: float = 1.0,
                 ratio: float = 0.5,
                 attn_layer: int = -1):
        self.alpha = check_alpha('TransMix', alpha)
        self.ratio = float(
            check_number('TransMix', 'ratio', ratio, low=0, high=1))
        self.attn_layer = check_number(
            'TransMix', 'attn_layer', attn_layer, integer=True)

    def build_mix(self,
                  inputs: torch.Tensor,
                  batch_score: Optional[torch.Tensor] = None) -> dict:
        """CutMix decisions.

        Returns:
            dict: ``mask`` [B, 1, H, W] (0 in the box), ``index`` [B],
            ``lam`` [B] (own visible area), ``box`` ``(y1, y2, x1, x2)``.
        """
        B, device = inputs.shape[0], inputs.device
        H, W = inputs.shape[-2:]
        box = cutmix_box(sample_beta(self.alpha), H, W)
        lam = 1 - box_area(box) / float(H * W)
        return dict(
            mask=box_keep_mask(B, H, W, box, device),
            index=derangement(B, device),
            lam=torch.full((B, ), lam, device=device),
            box=box)

    def __call__(self, inputs: torch.Tensor, batch_score: torch.Tensor
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
        """CutMix the batch and leave the record for the re-scoring.

        Returns:
            tuple: Mixed images and the area-mixed float scores (the
            classifier replaces them with the attention-mixed ones).

        Raises:
            RuntimeError: If the augment is not bound to a model.
        """
        scores = batch_score.float()
        self._set_record(None)
        if not check_batch('TransMix', inputs, batch_score):
            return inputs, scores
        self.model  # noqa: B018  (raises a clear error when unbound)
        plan = self.build_mix(inputs)
        index = plan['index']
        mixed = self.apply_mix(inputs, inputs[index], plan)
        self._set_record(
            MixRecord(
                source=self,
                clean_inputs=inputs,
                clean_scores=scores,
                index=index,
                lam=plan['lam'],
                mask=plan['mask'],
                extra=dict(box=plan['box'])))
        return mixed, mix_scores(scores, index, plan['lam'])

    def attention_lam(self, out: ToMeOutput,
                      record: MixRecord) -> torch.Tensor:
        """Label weights from a forward's attention (see
        :func:`transmix_lam`)."""
        return transmix_lam(
            cls_attention_grid(out), record.mask, record.lam, self.ratio)

    def forward_and_rescore(self, model: torch.nn.Module,
                            inputs: torch.Tensor, record: MixRecord
                            ) -> Tuple[tuple, torch.Tensor]:
        """The training forward on the mixed batch and its re-mixed scores.

        Args:
            model (nn.Module): The classifier (``backbone``, optional
                ``neck``).
            inputs (Tensor): The mixed images.
            record (MixRecord): This step's record.

        Returns:
            tuple: ``(feats, scores)``: what ``model.extract_feat`` would
            return (computed with gradients) and the ``[B, K]`` scores mixed
            with :meth:`attention_lam`. ``record.lam`` is updated to those
            label weights (the area weights move to
            ``record.extra['lam_area']``), so a loss with
            ``lam_reduction='batch'`` uses them too.
        """
        out = forward_with_attention(
            model.backbone, inputs, attn_layer=self.attn_layer,
            trace_source=False)
        feats = out.outs
        if getattr(model, 'with_neck', False):
            feats = model.neck(feats)
        lam = self.attention_lam(out, record)
        record.extra['lam_area'] = record.lam
        record.lam = lam
        return feats, mix_scores(record.clean_scores, record.index, lam)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(alpha={self.alpha}, ratio='
                f'{self.ratio}, attn_layer={self.attn_layer})')
