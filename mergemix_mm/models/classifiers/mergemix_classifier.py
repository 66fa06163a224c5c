"""``MergeMixClassifier``: an ``ImageClassifier`` that lets batch augments use
the model being trained."""
import copy
from contextlib import nullcontext
from numbers import Real
from typing import Dict, List, Optional, Union

import torch
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.models.utils.batch_augments import Mixup
from mmpretrain.registry import BATCH_AUGMENTS, MODELS
from mmpretrain.structures import DataSample
from torch import nn

from ...utils.checks import check_bool, check_number
from ..batch_augments.base import (MixRecord, ModelAwareMixin,
                                   bind_model_aware_augments,
                                   model_aware_augments, mix_scores)

__all__ = [
    'MergeMixClassifier', 'normalize_batch_augments',
    'bind_classifier_augments'
]

_AUX_LOSSES = (None, 'mixup', 'clean')


def normalize_batch_augments(cfg) -> Optional[dict]:
    """Turn the batch-augment shorthands users write into mmpretrain's form.

    mmpretrain builds ``RandomBatchAugment(**cfg)``, so it only accepts
    ``dict(augments=..., probs=...)``. This also accepts a single augment
    (``dict(type='MergeMix')``), a list of augments, and an empty ``augments``
    list (meaning: no batch augment). The input is never modified.

    Args:
        cfg (dict | list | None): What the config holds.

    Returns:
        dict | None: ``dict(augments=[...], probs=...)`` or None.
    """
    if cfg is None:
        return None
    if isinstance(cfg, dict) and 'type' in cfg and (
            'augments' in cfg or 'probs' in cfg):
        raise TypeError(
            f'batch augments {dict(cfg)!r} mix the single-augment shorthand '
            '(`type`) with `augments`/`probs`: a child config\'s '
            "train_cfg=dict(type=...) is merged into its base's `augments` "
            'list (mmengine merges dicts). Replace the list instead: '
            "model = dict(train_cfg=dict(augments=[dict(type='Mixup', "
            "alpha=0.8)])) (docs/configs.md).")
    if isinstance(cfg, (list, tuple)):
        cfg = dict(augments=list(cfg))
    elif isinstance(cfg, dict) and 'type' in cfg:
        cfg = dict(augments=[cfg])
    elif not isinstance(cfg, dict):
        raise TypeError(
            'batch_augments / train_cfg must be a dict, a list of augment '
            f'dicts or None, got {type(cfg).__name__}.')
    cfg = copy.deepcopy(dict(cfg))
    unknown = set(cfg) - {'augments', 'probs'}
    if unknown:
        raise TypeError(
            f'Unknown batch-augment setting(s) {sorted(unknown)}: '
            'model.train_cfg only takes `augments` and `probs`; MergeMix '
            'options go inside the augment dict, classifier options '
            '(tome_in_mix, aux_loss) are MergeMixClassifier arguments. To '
            "swap the augment: model = dict(train_cfg=dict(augments=[dict("
            "type='Mixup', alpha=0.8)])) (docs/configs.md).")
    augments = cfg.get('augments')
    if isinstance(augments, str):
        raise TypeError(
            f'batch augments: augments={augments!r} must be a list of '
            "augment dicts, e.g. [dict(type='Mixup', alpha=0.8)].")
    if isinstance(augments, dict):
        augments = cfg['augments'] = [augments]
    if augments is None or len(augments) == 0:
        return None
    for aug in augments:
        if isinstance(aug, dict):
            if 'type' not in aug:
                raise TypeError(f'batch augment {aug!r} has no `type` key.')
            _check_mmpretrain_alpha(aug)
        elif not callable(aug):
            raise TypeError(
                f'batch augment {aug!r} must be a config dict with a `type` '
                f'or a callable, got {type(aug).__name__}.')
    _check_probs(cfg.get('probs'), len(augments))
    return cfg


def _check_mmpretrain_alpha(aug: dict) -> None:
    """Check the ``alpha`` of mmpretrain's own Mixup / CutMix / ResizeMix
    before they assert on it.

    Those classes ``assert isinstance(alpha, float) and alpha > 0``: a bad
    alpha, and also a valid int such as ``alpha=1``, fails with a bare
    ``AssertionError``. Here an int becomes the float it means (in the
    caller's copy of the config) and anything else is refused with an error
    naming the setting.

    Args:
        aug (dict): One augment config (modified in place: the copy made by
            :func:`normalize_batch_augments`).

    Raises:
        TypeError: If ``alpha`` is not a number.
        ValueError: If ``alpha`` is not a finite number > 0.
    """
    kind = aug['type']
    cls = BATCH_AUGMENTS.get(kind) if isinstance(kind, str) else kind
    if not (isinstance(cls, type) and issubclass(cls, Mixup)
            and cls.__module__.startswith('mmpretrain.')):
        return
    if 'alpha' in aug:
        aug['alpha'] = check_number(cls.__name__, 'alpha', aug['alpha'],
                                    low=0, low_open=True)


def _check_probs(probs, num_augments: int) -> None:
    """Check ``probs`` before mmpretrain's ``RandomBatchAugment`` asserts.

    Raises:
        TypeError: If ``probs`` is not None, a float or a list of numbers.
        ValueError: If its length differs from the number of augments, or
            the probabilities are negative or sum to more than 1.
    """
    if probs is None:
        return
    values = [probs] if isinstance(probs, float) else probs
    if not isinstance(values, (list, tuple)) or any(
            isinstance(p, bool) or not isinstance(p, Real) for p in values):
        raise TypeError(f'batch augments: probs={probs!r} must be None, a '
                        'float or a list of numbers (one per augment).')
    if len(values) != num_augments:
        raise ValueError(
            f'batch augments: probs={probs!r} has {len(values)} entries but '
            f'there are {num_augments} augments; give one probability per '
            'augment.')
    if any(p < 0 for p in values) or sum(values) > 1:
        raise ValueError(f'batch augments: probs={probs!r} must be >= 0 and '
                         'sum to at most 1.')


@MODELS.register_module()
class MergeMixClassifier(ImageClassifier):
    """Image classifier whose batch augments may use the model itself.

    It behaves exactly like mmpretrain's :class:`ImageClassifier` (EMA,
    ``predict``, checkpoints, ``extract_feat``) and adds:

    * **Shorthand configs.** ``data_preprocessor=dict(batch_augments=
      dict(type='MergeMix'), ...)``,
      ``train_cfg=dict(augments=dict(type='MergeMix'))``, lists of augments
      and an empty ``augments=[]`` (no mixing) are all accepted.
    * **Binding.** Every augment that derives from
      :class:`~mergemix_mm.models.batch_augments.base.ModelAwareMixin`
      (MergeMix, TransMix, ...) is bound to this model at build time.
    * **ToMe in the classifying forwards** (``tome_in_mix``). With a ToMe
      backbone, ``tome_in_mix=True`` (OpenMixup's default, used by its
      ImageNet and fine-grained configs) keeps merging for the mask pass only:
      the training forwards and test run un-merged. ``False`` (OpenMixup's
      CIFAR configs) runs the training forwards *and test* with the backbone's
      merge schedule.
    * **Auxiliary loss** of the official MergeMix recipe, for iterations that
      MergeMix mixed (not the baselines, model-aware or not: an augment
      takes it when its ``takes_aux_loss`` is True): ``'mixup'`` adds a
      Mixup (``aux_alpha``) loss on a second, independently mixed copy of
      the clean batch; ``'clean'`` adds plain CE on the clean batch; None
      adds nothing. Without DDP the two losses are back-propagated one after
      the other, so only one graph is alive at a time.

    Args:
        backbone (dict): Backbone config.
        neck (dict, optional): Neck config. Defaults to None.
        head (dict, optional): Head config. Defaults to None.
        pretrained (str, optional): Pretrained checkpoint. Defaults to None.
        train_cfg (dict | list, optional): Batch augments (see above).
            Defaults to None.
        data_preprocessor (dict, optional): Preprocessor config.
            Defaults to None.
        tome_in_mix (bool): See above. Defaults to True.
        aux_loss (str, optional): ``'mixup'``, ``'clean'`` or None.
            Defaults to None.
        aux_alpha (float): Beta parameter of the auxiliary Mixup.
            Defaults to 0.8.
        init_cfg (dict, optional): Init config. Defaults to None.
    """

    def __init__(self,
                 backbone: dict,
                 neck: Optional[dict] = None,
                 head: Optional[dict] = None,
                 pretrained: Optional[str] = None,
                 train_cfg: Optional[Union[dict, list]] = None,
                 data_preprocessor: Optional[dict] = None,
                 tome_in_mix: bool = True,
                 aux_loss: Optional[str] = None,
                 aux_alpha: float = 0.8,
                 init_cfg: Optional[dict] = None):
        if aux_loss not in _AUX_LOSSES:
            raise ValueError(
                f'aux_loss={aux_loss!r} is not valid; choose one of '
                f'{_AUX_LOSSES}.')
        aux_alpha = check_number(
            'MergeMixClassifier', 'aux_alpha', aux_alpha, low=0, low_open=True)
        check_bool('MergeMixClassifier', 'tome_in_mix', tome_in_mix)
        train_cfg = normalize_batch_augments(train_cfg)
        if isinstance(data_preprocessor, dict):
            data_preprocessor = copy.deepcopy(data_preprocessor)
            if 'batch_augments' in data_preprocessor:
                data_preprocessor['batch_augments'] = \
                    normalize_batch_augments(
                        data_preprocessor['batch_augments'])
        super().__init__(
            backbone=backbone,
            neck=neck,
            head=head,
            pretrained=pretrained,
            train_cfg=train_cfg,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        self.tome_in_mix = tome_in_mix
        self.aux_loss = aux_loss
        self.aux_alpha = aux_alpha
        if not tome_in_mix and not hasattr(self.backbone, 'merging'):
            raise ValueError(
                'tome_in_mix=False runs the classifying forwards with token '
                'merging, which needs a ToMe backbone (e.g. '
                f"type='ToMeVisionTransformer'); got "
                f'{type(self.backbone).__name__}.')
        if tome_in_mix and (any(getattr(self.backbone, 'train_r_list', ()))
                            or any(getattr(self.backbone, 'test_r_list',
                                           ()))):
            # inert by design (the official configs set it), but said once
            print_log(
                'MergeMixClassifier(tome_in_mix=True): the classifying '
                'forwards (train and test) do not merge tokens, so the '
                f'backbone\'s merge schedule (train r '
                f'{self.backbone.train_r_list}, test r '
                f'{self.backbone.test_r_list}) is unused; the MergeMix mask '
                'pass merges with the augment\'s own merge_num. Set '
                'tome_in_mix=False to train and test with it.',
                logger='current')
        bind_classifier_augments(self)

    @property
    def model_aware_augments(self) -> List[ModelAwareMixin]:
        """Batch augments of the data preprocessor that use the model."""
        return model_aware_augments(self)

    def _merge_context(self):
        """Context of the classifying forwards (train and test)."""
        if hasattr(self.backbone, 'merging'):
            return self.backbone.merging(not self.tome_in_mix)
        return nullcontext()

    def extract_feat(self, inputs: torch.Tensor, stage: str = 'neck'):
        with self._merge_context():
            return super().extract_feat(inputs, stage=stage)

    def _pop_record(self) -> Optional[MixRecord]:
        records = [
            rec for rec in (aug.pop_record()
                            for aug in self.model_aware_augments)
            if rec is not None
        ]
        if len(records) > 1:
            raise RuntimeError(
                'More than one model-aware augment left a record in one '
                'step; RandomBatchAugment applies one augment per batch.')
        return records[0] if records else None

    def _head_loss(
            self,
            feats,
            data_samples: List[DataSample],
            scores: Optional[torch.Tensor] = None,
            record: Optional[MixRecord] = None) -> Dict[str, torch.Tensor]:
        # The caller's samples are never modified: the auxiliary loss reuses
        # them and must not see this loss's targets or mix metadata.
        # ``new()`` gives fresh field sets (``copy.copy`` would share them)
        # and shares the tensors.
        if scores is not None or record is not None:
            data_samples = [ds.new() for ds in data_samples]
        if scores is not None:
            for ds, score in zip(data_samples, scores):
                ds.set_gt_score(score)
        if record is not None:
            for i, ds in enumerate(data_samples):
                ds.set_field(int(record.index[i]), 'mix_index',
                             field_type='metainfo')
                ds.set_field(float(record.lam[i]), 'mix_lam',
                             field_type='metainfo')
        return self.head.loss(feats, data_samples)

    def _main_loss(self, inputs: torch.Tensor,
                   data_samples: List[DataSample],
                   record: Optional[MixRecord]) -> Dict[str, torch.Tensor]:
        if record is not None and record.source.needs_train_forward:
            with self._merge_context():
                feats, scores = record.source.forward_and_rescore(
                    self, inputs, record)
            return self._head_loss(feats, data_samples, scores, record)
        feats = self.extract_feat(inputs)
        return self._head_loss(feats, data_samples, record=record)

    def _aux_loss(self, record: MixRecord,
                  data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        inputs, scores = record.clean_inputs, record.clean_scores
        if self.aux_loss == 'mixup':
            lam = float(torch.distributions.Beta(
                self.aux_alpha, self.aux_alpha).sample())
            index = torch.randperm(inputs.size(0), device=inputs.device)
            inputs = lam * inputs + (1 - lam) * inputs[index]
            scores = mix_scores(scores, index, lam)
        feats = self.extract_feat(inputs)
        losses = self._head_loss(feats, data_samples, scores)
        return {f'aux_{k}': v for k, v in losses.items()}

    def _takes_aux_loss(self, record: Optional[MixRecord]) -> bool:
        """Whether this batch gets the auxiliary loss: ``aux_loss`` is set
        and the batch was mixed by an augment that takes it (MergeMix)."""
        return (self.aux_loss is not None and record is not None
                and bool(getattr(record.source, 'takes_aux_loss', False)))

    def loss(self, inputs: torch.Tensor,
             data_samples: List[DataSample]) -> dict:
        """Losses of one training batch (main loss, plus the auxiliary loss
        when ``aux_loss`` is set and MergeMix mixed the batch)."""
        record = self._pop_record()
        losses = self._main_loss(inputs, data_samples, record)
        if self._takes_aux_loss(record):
            losses.update(self._aux_loss(record, data_samples))
        return losses

    def train_step(self, data: Union[dict, tuple, list],
                   optim_wrapper: OptimWrapper) -> Dict[str, torch.Tensor]:
        """Like ``BaseModel.train_step``, but with the auxiliary loss
        back-propagated after the main one (one autograd graph at a time).

        Under DDP, mmengine's wrapper calls ``loss`` instead and the two
        losses are summed before a single backward.
        """
        if self.aux_loss is None:
            return super().train_step(data, optim_wrapper)
        with optim_wrapper.optim_context(self):
            data = self.data_preprocessor(data, True)
            inputs, data_samples = data['inputs'], data['data_samples']
            record = self._pop_record()
            main = self._main_loss(inputs, data_samples, record)
            parsed, log_vars = self.parse_losses(main)
            optim_wrapper.backward(optim_wrapper.scale_loss(parsed))
            if self._takes_aux_loss(record):
                # Both backward calls belong to one iteration: keep the
                # wrapper's gradient-accumulation counter at +1 per step,
                # and undo the first call's count before the auxiliary loss
                # is scaled, so that both losses get the same accumulation
                # factor (it depends on the counter).
                optim_wrapper._inner_count -= 1
                del main, parsed
                aux = self._aux_loss(record, data_samples)
                aux_parsed, aux_vars = self.parse_losses(aux)
                optim_wrapper.backward(optim_wrapper.scale_loss(aux_parsed))
                # ``aux_vars['loss']`` is the auxiliary total; the logged
                # total is main + auxiliary.
                total = log_vars['loss'] + aux_vars.pop('loss')
                log_vars.update(aux_vars)
                log_vars['loss'] = total
        if optim_wrapper.should_update():
            optim_wrapper.step()
            optim_wrapper.zero_grad()
        return log_vars


def bind_classifier_augments(model: nn.Module) -> None:
    """Bind the model-aware batch augments of a classifier to it.

    :class:`MergeMixClassifier` binds them all and keeps their records. A
    plain ``ImageClassifier`` binds those that only need the model for a
    no-grad pass (MergeMix) and keeps no records (nobody consumes them);
    one that re-scores labels from the training forward (TransMix-style) is
    refused, because the plain classifier would train on its un-rescored
    labels without a word. Used at build time and by ``SwitchRecipeHook``
    after every switch.

    Args:
        model (nn.Module): The classifier, or a model wrapper around it.

    Raises:
        ValueError: For an augment that needs
            :class:`MergeMixClassifier` under another classifier.
    """
    if is_model_wrapper(model):
        model = model.module
    if isinstance(model, MergeMixClassifier):
        bind_model_aware_augments(model)
        return
    for aug in model_aware_augments(model):
        if aug.needs_train_forward:
            raise ValueError(
                f'{type(aug).__name__} re-scores labels from the training '
                "forward and needs model type='MergeMixClassifier' "
                f"(got type='{type(model).__name__}'); change model.type.")
    bind_model_aware_augments(model, keep_records=False)


def _support_plain_image_classifier() -> None:
    """Let model-aware augments work under mmpretrain's ``ImageClassifier``.

    A plain ``ImageClassifier`` never binds augments to the model. After its
    ``__init__`` we bind those that only need the model for a no-grad pass
    (MergeMix), and fail at build time, saying what to change, for those that
    need :class:`MergeMixClassifier`'s training forward (TransMix-style
    re-scoring). Records are not kept for plain classifiers (nobody consumes
    them), so the auxiliary loss is only available with
    :class:`MergeMixClassifier`.
    """
    if getattr(ImageClassifier.__init__, '_mergemix_patched', False):
        return
    original = ImageClassifier.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if not isinstance(self, MergeMixClassifier):
            bind_classifier_augments(self)

    __init__._mergemix_patched = True
    ImageClassifier.__init__ = __init__


_support_plain_image_classifier()
