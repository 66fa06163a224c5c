"""ViT classification head for mixed (soft) labels."""
from typing import List

import torch
from mmpretrain.models.heads import VisionTransformerClsHead
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

__all__ = ['MixLabelClsHead']


@MODELS.register_module()
class MixLabelClsHead(VisionTransformerClsHead):
    """``VisionTransformerClsHead`` that trains on mixed labels in fp32.

    Differences from the stock head:

    * the loss is computed on fp32 logits (safe under AMP);
    * training accuracy is never computed (it is meaningless for soft
      targets), so ``cal_acc`` must be False;
    * with a loss that has ``lam_reduction='batch'``
      (:class:`~mergemix_mm.models.losses.MixedLabelCrossEntropyLoss`), the
      partner index and label weights that
      :class:`~mergemix_mm.models.classifiers.MergeMixClassifier` attaches to
      the data samples (``mix_index``, ``mix_lam``) are passed to the loss,
      reproducing OpenMixup's batch-mean label weight.

    Args:
        loss (dict): Loss config. Defaults to
            ``dict(type='MixedLabelCrossEntropyLoss', label_smooth_val=0.1)``.
        **kwargs: Arguments of :class:`VisionTransformerClsHead`.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 loss: dict = dict(
                     type='MixedLabelCrossEntropyLoss', label_smooth_val=0.1),
                 cal_acc: bool = False,
                 **kwargs):
        if cal_acc:
            raise ValueError(
                'MixLabelClsHead: cal_acc=True is not supported; training '
                'accuracy is meaningless with mixed labels.')
        if isinstance(in_channels, bool) or not isinstance(in_channels, int):
            raise TypeError(f'MixLabelClsHead: in_channels={in_channels!r} '
                            'must be an int.')
        if in_channels < 1:
            raise ValueError(f'MixLabelClsHead: in_channels={in_channels} '
                             'must be >= 1.')
        super().__init__(
            num_classes=num_classes,
            in_channels=in_channels,
            loss=loss,
            cal_acc=False,
            **kwargs)

    def _get_loss(self, cls_score: torch.Tensor,
                  data_samples: List[DataSample], **kwargs) -> dict:
        if 'gt_score' in data_samples[0]:
            target = torch.stack([ds.gt_score for ds in data_samples])
        else:
            target = torch.cat([ds.gt_label for ds in data_samples])
        if 'mix_index' in data_samples[0] and getattr(
                self.loss_module, 'lam_reduction', None) == 'batch':
            device = cls_score.device
            kwargs.update(
                labels=torch.cat([ds.gt_label
                                  for ds in data_samples]).to(device),
                index=torch.tensor([ds.mix_index for ds in data_samples],
                                   device=device),
                lam=torch.tensor([ds.mix_lam for ds in data_samples],
                                 device=device))
        loss = self.loss_module(
            cls_score.float(), target, avg_factor=cls_score.size(0), **kwargs)
        return dict(loss=loss)
