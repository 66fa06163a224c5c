"""Shared pieces of the model-aware batch augments (MergeMix, TransMix, ...).

mmpretrain's batch augments are plain callables
``(inputs, batch_score) -> (mixed_inputs, mixed_score)`` built inside the data
preprocessor, which never sees the model. Augments that need the model
(MergeMix's attention pass) or the training forward (TransMix's label
re-weighting) derive from :class:`ModelAwareMixin`:

* :meth:`ModelAwareMixin.bind` gives them the classifier (done by
  :class:`~mergemix_mm.models.classifiers.MergeMixClassifier` at build time);
* each call leaves a :class:`MixRecord` that the classifier takes with
  :meth:`ModelAwareMixin.pop_record` in the same training step, to compute an
  auxiliary loss on the clean batch or to re-score the labels from the
  attention of the training forward.
"""
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
from mmengine.model import is_model_wrapper

__all__ = ['MixRecord', 'ModelAwareMixin', 'derangement', 'mix_scores',
           'check_batch', 'model_aware_augments', 'bind_model_aware_augments']


@dataclass
class MixRecord:
    """What one model-aware augment call did to a batch.

    Attributes:
        source (object): The augment that produced the record.
        clean_inputs (Tensor): The un-mixed inputs (N, C, H, W).
        clean_scores (Tensor): The un-mixed float scores (N, num_classes).
        index (Tensor): Partner index per sample (N,).
        lam (Tensor): Label weight of each sample's own image (N,).
        mask (Tensor, optional): Pixel mask (N, 1, H, W), 1 = own image.
        extra (dict): Method-specific details.
    """
    source: Any
    clean_inputs: torch.Tensor
    clean_scores: torch.Tensor
    index: torch.Tensor
    lam: torch.Tensor
    mask: Optional[torch.Tensor] = None
    extra: Dict[str, Any] = field(default_factory=dict)


class ModelAwareMixin:
    """Mixin for batch augments that use the model being trained."""

    #: Whether the classifier must re-score labels from the training forward.
    needs_train_forward: bool = False
    #: Whether ``MergeMixClassifier``'s ``aux_loss`` follows this augment's
    #: batches (MergeMix's official recipe; the baselines train without it).
    takes_aux_loss: bool = False
    #: Whether calls leave a :class:`MixRecord` (False under a classifier
    #: that never consumes them, e.g. mmpretrain's plain ImageClassifier).
    keep_records: bool = True

    def bind(self, model: torch.nn.Module) -> None:
        """Give the augment the model it mixes for.

        A strong reference is kept on purpose: ``copy.deepcopy`` (used by
        mmengine's EMA hook) cannot copy a ``weakref.proxy``.

        Args:
            model (nn.Module): The classifier (with a ``backbone``).
        """
        self._bound_model = model
        self._record = None

    @property
    def model(self) -> torch.nn.Module:
        model = getattr(self, '_bound_model', None)
        if model is None:
            raise RuntimeError(
                f'{type(self).__name__} is not bound to a model. Use '
                "model type='MergeMixClassifier' (it binds model-aware "
                'augments at build time), or call augment.bind(model) '
                'yourself.')
        return model

    def _set_record(self, record: Optional[MixRecord]) -> None:
        self._record = record if self.keep_records else None

    def pop_record(self) -> Optional[MixRecord]:
        """Return and forget the record of the last call (None if none)."""
        record = getattr(self, '_record', None)
        self._record = None
        return record


def model_aware_augments(model: torch.nn.Module) -> List[ModelAwareMixin]:
    """The model-aware batch augments of ``model``'s data preprocessor.

    Args:
        model (nn.Module): A classifier (not a model wrapper).

    Returns:
        list[ModelAwareMixin]: In the order of the preprocessor's
        ``batch_augments.augments``; empty without batch augments.
    """
    batch_augments = getattr(model.data_preprocessor, 'batch_augments', None)
    return [
        aug for aug in getattr(batch_augments, 'augments', None) or []
        if isinstance(aug, ModelAwareMixin)
    ]


def bind_model_aware_augments(model: torch.nn.Module,
                              keep_records: Optional[bool] = None) -> int:
    """Bind every model-aware batch augment of ``model``'s data preprocessor
    to ``model`` (unwrapped first if it is a model wrapper).

    Args:
        model (nn.Module): The classifier, or a model wrapper around it.
        keep_records (bool, optional): If given, set each augment's
            :attr:`ModelAwareMixin.keep_records` to it. Defaults to None
            (left as is).

    Returns:
        int: How many augments were bound.
    """
    if is_model_wrapper(model):
        model = model.module
    augments = model_aware_augments(model)
    for aug in augments:
        aug.bind(model)
        if keep_records is not None:
            aug.keep_records = keep_records
    return len(augments)


def derangement(num: int,
                device: torch.device,
                max_tries: int = 10,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A random permutation without fixed points (no sample paired with
    itself).

    Tries ``torch.randperm`` up to ``max_tries`` times; if every try has a
    fixed point, falls back to a random cyclic shift of a random permutation,
    which never has one. For ``num < 2`` the identity is returned.

    Args:
        num (int): Permutation length.
        device (torch.device): Device of the result.
        max_tries (int): Plain random tries before the fallback.
            Defaults to 10.
        generator (torch.Generator, optional): RNG. Defaults to None.

    Returns:
        Tensor: Long tensor (num,) with ``perm[i] != i`` for num >= 2.
    """
    if num < 2:
        return torch.arange(num, device=device)
    arange = torch.arange(num, device=device)
    for _ in range(max_tries):
        perm = torch.randperm(num, generator=generator).to(device)
        if not bool((perm == arange).any()):
            return perm
    order = torch.randperm(num, generator=generator).to(device)
    shift = int(torch.randint(1, num, (1, ), generator=generator))
    perm = torch.empty_like(order)
    perm[order] = order.roll(shift)
    return perm


def mix_scores(scores: torch.Tensor, index: torch.Tensor,
               lam: torch.Tensor) -> torch.Tensor:
    """Soft scores ``lam_i * y_i + (1 - lam_i) * y_index[i]``.

    Args:
        scores (Tensor): (N, C) float scores.
        index (Tensor): (N,) partner indices.
        lam (Tensor): (N,) or scalar label weight of each own image.

    Returns:
        Tensor: (N, C) mixed scores; rows sum to 1 when the inputs do.
    """
    lam = torch.as_tensor(lam, dtype=scores.dtype, device=scores.device)
    if lam.ndim == 1:
        lam = lam[:, None]
    return lam * scores + (1 - lam) * scores[index]


_WARNED = set()


def check_batch(name: str, inputs: torch.Tensor,
                batch_score: torch.Tensor) -> bool:
    """Validate an augment's inputs; return False for a batch of one.

    A batch of one (e.g. the last batch with ``drop_last=False``) is valid
    input but cannot be mixed: the caller passes it through unmixed, and a
    warning is emitted once per augment type.

    Raises:
        TypeError: If the inputs are not floating point (a soft mask or a
            weighted sum cast to an integer type would not match ``lam``).
        ValueError: If shapes do not fit or the inputs contain NaN/Inf.
    """
    if not inputs.is_floating_point():
        raise TypeError(
            f'{name}: inputs must be a floating-point tensor, got '
            f'{inputs.dtype}; mix the normalised images (mmpretrain\'s data '
            'preprocessor gives float32) or call inputs.float() first.')
    if inputs.ndim != 4:
        raise ValueError(
            f'{name}: inputs must be (N, C, H, W), got shape '
            f'{tuple(inputs.shape)}.')
    if batch_score.ndim != 2 or batch_score.shape[0] != inputs.shape[0]:
        raise ValueError(
            f'{name}: batch_score must be (N, num_classes) with N = '
            f'{inputs.shape[0]}, got shape {tuple(batch_score.shape)}.')
    if inputs.shape[0] == 0:
        raise ValueError(f'{name}: got an empty batch (N = 0).')
    if not bool(torch.isfinite(inputs).all()):
        bad = (~torch.isfinite(inputs)).flatten(1).any(1).nonzero()
        raise ValueError(
            f'{name}: inputs contain NaN or Inf (samples '
            f'{bad.flatten().tolist()} of the batch); refusing to mix them.')
    if inputs.shape[0] < 2:
        if name not in _WARNED:
            _WARNED.add(name)
            warnings.warn(
                f'{name}: a batch of 1 cannot be mixed; it passes through '
                'unmixed with its own label (warned once).')
        return False
    return True
