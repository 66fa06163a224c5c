"""Soft-target cross entropy for mixed labels."""
import math
from numbers import Real
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS

__all__ = ['MixedLabelCrossEntropyLoss', 'smooth_targets']


def smooth_targets(target: torch.Tensor, num_classes: int,
                   label_smooth_val: float) -> torch.Tensor:
    """Label smoothing in "original" mode: ``(1 - eps) * q + eps / C``.

    Args:
        target (Tensor): Class indices (N,) or soft scores (N, C).
        num_classes (int): Number of classes C.
        label_smooth_val (float): eps in [0, 1).

    Returns:
        Tensor: Float targets (N, C).
    """
    if target.ndim == 1:
        target = F.one_hot(target.long(), num_classes)
    target = target.float()
    if label_smooth_val:
        target = ((1 - label_smooth_val) * target
                  + label_smooth_val / num_classes)
    return target


@MODELS.register_module()
class MixedLabelCrossEntropyLoss(nn.Module):
    """Cross entropy with soft (mixed) targets, label smoothing, fp32 math.

    Two reductions of the label weight are supported:

    * ``lam_reduction='sample'`` (default): each sample's own soft target,
      ``mean_i CE(p_i, LS(t_i))``, with ``t_i`` the mixed score row.
    * ``lam_reduction='batch'``: OpenMixup's head form. Given the hard labels
      ``y``, the partner index ``pi`` and per-sample ``lam``, it computes
      ``mean(lam) * CE_mean(p, LS(y))
      + (1 - mean(lam)) * CE_mean(p, LS(y[pi]))``,
      i.e. every sample is trained with the batch-mean label weight. Because
      CE and smoothing are linear in the target, this equals the ``'sample'``
      form on scores built with the same batch-mean weight for every row.

    Args:
        label_smooth_val (float): Smoothing eps in [0, 1). Defaults to 0.
        lam_reduction (str): ``'sample'`` or ``'batch'``. Defaults to
            ``'sample'``.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    def __init__(self,
                 label_smooth_val: float = 0.0,
                 lam_reduction: str = 'sample',
                 loss_weight: float = 1.0):
        super().__init__()
        if not isinstance(label_smooth_val, (int, float)) or not (
                0 <= label_smooth_val < 1):
            raise ValueError(
                f'label_smooth_val={label_smooth_val!r} must be in [0, 1).')
        if lam_reduction not in ('sample', 'batch'):
            raise ValueError(
                f'lam_reduction={lam_reduction!r} must be '
                "'sample' or 'batch'.")
        if isinstance(loss_weight, bool) or not isinstance(
                loss_weight, Real) or not math.isfinite(loss_weight):
            raise TypeError(f'MixedLabelCrossEntropyLoss: loss_weight='
                            f'{loss_weight!r} must be a finite number.')
        self.label_smooth_val = float(label_smooth_val)
        self.lam_reduction = lam_reduction
        self.loss_weight = loss_weight

    def forward(self,
                cls_score: torch.Tensor,
                target: torch.Tensor,
                labels: Optional[torch.Tensor] = None,
                index: Optional[torch.Tensor] = None,
                lam: Optional[torch.Tensor] = None,
                avg_factor: Optional[int] = None,
                **kwargs) -> torch.Tensor:
        """Compute the loss.

        Args:
            cls_score (Tensor): Logits (N, C); computed in fp32.
            target (Tensor): Labels (N,) or soft scores (N, C).
            labels (Tensor, optional): Hard labels (N,), needed with
                ``lam_reduction='batch'`` for mixed batches.
            index (Tensor, optional): Partner indices (N,).
            lam (Tensor, optional): Own-image label weights (N,).
            avg_factor (int, optional): Kept for mmpretrain compatibility;
                the loss is always a mean over samples.

        Returns:
            Tensor: Scalar loss.
        """
        logp = F.log_softmax(cls_score.float(), dim=-1)
        num_classes = cls_score.size(-1)
        if self.lam_reduction == 'batch' and lam is not None:
            if labels is None or index is None:
                raise ValueError(
                    "lam_reduction='batch' needs the hard labels and the "
                    'partner index of the mixed batch.')
            lam_bar = lam.float().mean()
            own = smooth_targets(labels, num_classes, self.label_smooth_val)
            ce_a = -(own * logp).sum(-1).mean()
            ce_b = -(own[index] * logp).sum(-1).mean()
            loss = lam_bar * ce_a + (1 - lam_bar) * ce_b
        else:
            soft = smooth_targets(target, num_classes, self.label_smooth_val)
            loss = -(soft * logp).sum(-1).mean()
        return self.loss_weight * loss
