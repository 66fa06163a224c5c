"""A common frame for the mask-based baselines (FMix, GridMix, ...).

Every baseline in this package splits a batch augment into two public
steps, so that tests, visualisation and the label-fidelity benchmark can see
exactly what a method did:

* ``build_mix(inputs, batch_score=None) -> dict`` draws the random
  decisions (partner ``index`` [B], label weight of the own image ``lam``
  [B], pixel ``mask`` [B, 1, H, W] with 1 = own pixel, plus method-specific
  keys) without mixing;
* ``apply_mix(own, partner, plan) -> Tensor`` mixes *any* tensors of the
  batch's spatial size with those decisions (``partner`` is already
  aligned, i.e. ``inputs[plan['index']]``).

``__call__(inputs, batch_score)`` is mmpretrain's batch-augment contract:
``check_batch`` first (a batch of one passes through unmixed), then
``build_mix``, ``apply_mix`` and soft scores
``lam_i * y_i + (1 - lam_i) * y_index[i]``. The caller's tensors are never
written to.

The plan is a plain dict, like :meth:`MergeMix.build_mix`.
"""
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from ...utils.checks import Number, check_number
from .base import check_batch, mix_scores

__all__ = [
    'PlannedMix', 'check_alpha', 'check_number', 'check_range_pair',
    'sample_beta', 'uniform_from'
]


def check_alpha(owner: str, alpha, name: str = 'alpha') -> float:
    """``alpha`` of a Beta distribution: a number > 0 (ints accepted)."""
    return float(check_number(owner, name, alpha, low=0, low_open=True))


def check_range_pair(owner: str,
                     name: str,
                     value,
                     low: Optional[float] = None,
                     high: Optional[float] = None,
                     low_open: bool = False,
                     integer: bool = False) -> Tuple[Number, Number]:
    """A number or a ``(min, max)`` pair, returned as an ordered pair.

    Raises:
        TypeError: If it is neither a number nor a pair of numbers.
        ValueError: If ``min > max`` or a bound is violated.
    """
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f'{owner}: {name}={value!r} must be a number or '
                             'a (min, max) pair.')
        pair = tuple(
            check_number(owner, name, v, low, high, low_open, integer=integer)
            for v in value)
    else:
        v = check_number(owner, name, value, low, high, low_open,
                         integer=integer)
        pair = (v, v)
    if pair[0] > pair[1]:
        raise ValueError(
            f'{owner}: {name}={value!r} has min > max.')
    return pair


def sample_beta(alpha: float, beta: Optional[float] = None) -> float:
    """One draw from ``Beta(alpha, beta)`` (``beta = alpha`` if None) with
    NumPy's global RNG, as mmpretrain's augments do (seeded by mmengine)."""
    return float(np.random.beta(alpha, alpha if beta is None else beta))


def uniform_from(pair: Sequence[Number], integer: bool = False) -> Number:
    """A uniform draw from a ``(min, max)`` pair (inclusive for ints)."""
    lo, hi = pair
    if integer:
        return int(np.random.randint(lo, hi + 1))
    return float(np.random.uniform(lo, hi)) if hi > lo else float(lo)


class PlannedMix:
    """Base of the baselines: ``__call__`` = ``build_mix`` + ``apply_mix``.

    Subclasses implement :meth:`build_mix`; the default :meth:`apply_mix`
    blends with ``plan['mask']`` (1 = own pixel).
    """

    def build_mix(self,
                  inputs: torch.Tensor,
                  batch_score: Optional[torch.Tensor] = None) -> dict:
        """Random decisions for one batch (see the module docstring).

        Args:
            inputs (Tensor): Normalised images ``[B, C, H, W]``, B >= 2.
            batch_score (Tensor, optional): ``[B, K]`` scores; only methods
                whose mask depends on the label (TdAttenMix) use them.
        """
        raise NotImplementedError

    def apply_mix(self, own: torch.Tensor, partner: torch.Tensor,
                  plan: dict) -> torch.Tensor:
        """Mix ``own`` with the aligned ``partner`` as ``plan`` says.

        Args:
            own (Tensor): ``[B, C, H, W]`` (any C).
            partner (Tensor): ``[B, C, H, W]``, row ``i`` is the partner of
                row ``i``.
            plan (dict): Output of :meth:`build_mix`.

        Returns:
            Tensor: A new ``[B, C, H, W]`` tensor.
        """
        mask = plan['mask'].to(own.dtype)
        return mask * own + (1 - mask) * partner

    def __call__(self, inputs: torch.Tensor, batch_score: torch.Tensor
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mix a batch.

        Args:
            inputs (Tensor): Normalised images ``[B, C, H, W]``.
            batch_score (Tensor): One-hot or soft scores ``[B, K]``.

        Returns:
            tuple: Mixed images and float scores (rows sum to 1 when the
            input rows do).
        """
        scores = batch_score.float()
        if not check_batch(type(self).__name__, inputs, batch_score):
            return inputs, scores
        plan = self.build_mix(inputs, scores)
        index = plan['index']
        mixed = self.apply_mix(inputs, inputs[index], plan)
        return mixed, mix_scores(scores, index, plan['lam'])
