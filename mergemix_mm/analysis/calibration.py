"""Confidence calibration: expected calibration error and reliability
diagrams (Guo et al., ICML 2017), as in Fig. 4 of the MergeMix paper.

The confidence of a prediction is its maximum softmax probability. The
``[0, 1]`` range is cut into ``num_bins`` equal-width bins
``(lo, hi]`` (the first one also holds 0); with ``n_b`` predictions in bin
``b``, ``acc_b`` their accuracy and ``conf_b`` their mean confidence:

.. math::

    ECE = \\sum_b \\frac{n_b}{N} |acc_b - conf_b|, \\qquad
    MCE = \\max_{b: n_b > 0} |acc_b - conf_b|.
"""
from dataclasses import asdict, dataclass, field
from typing import List, Sequence, Tuple

import numpy as np
import torch

from ..utils.checkpoint_safety import atomic_save_figure

__all__ = [
    'CalibrationBin', 'CalibrationResult', 'calibration_bins',
    'expected_calibration_error', 'calibration_from_scores', 'plot_reliability'
]


@dataclass
class CalibrationBin:
    """One confidence bin ``(lower, upper]``.

    Attributes:
        lower (float): Lower edge (exclusive, except for the first bin).
        upper (float): Upper edge (inclusive).
        count (int): Predictions in the bin.
        accuracy (float): Their accuracy (0 when empty).
        confidence (float): Their mean confidence (0 when empty).
    """
    lower: float
    upper: float
    count: int
    accuracy: float
    confidence: float


@dataclass
class CalibrationResult:
    """Calibration of one prediction set.

    Attributes:
        ece (float): Expected calibration error, in [0, 1].
        mce (float): Maximum calibration error over non-empty bins.
        accuracy (float): Top-1 accuracy.
        mean_confidence (float): Mean max-softmax confidence.
        num_samples (int): Number of predictions.
        bins (list[CalibrationBin]): The bins, lowest first.
    """
    ece: float
    mce: float
    accuracy: float
    mean_confidence: float
    num_samples: int
    bins: List[CalibrationBin] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)


def _as_array(name: str, values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ValueError(f'{name} is empty: no predictions to calibrate.')
    if not np.isfinite(arr).all():
        raise ValueError(f'{name} contains NaN or Inf.')
    return arr


def calibration_bins(confidences,
                     correct,
                     num_bins: int = 15) -> CalibrationResult:
    """Bin predictions by confidence and compute ECE / MCE.

    Args:
        confidences (array-like): ``[N]`` confidences in [0, 1].
        correct (array-like): ``[N]`` 1 / True where the prediction is right.
        num_bins (int): Number of equal-width bins. Defaults to 15.

    Returns:
        CalibrationResult: The bins and the summary numbers.

    Raises:
        ValueError: On empty or mismatched inputs, confidences outside
            [0, 1], or ``num_bins < 1``.
    """
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) \
            or num_bins < 1:
        raise ValueError(f'num_bins={num_bins!r} must be an int >= 1.')
    conf = _as_array('confidences', confidences)
    hit = _as_array('correct', correct)
    if conf.shape != hit.shape:
        raise ValueError(
            f'confidences ({conf.size}) and correct ({hit.size}) must have '
            'the same length.')
    if conf.min() < 0 or conf.max() > 1:
        raise ValueError(
            'confidences must lie in [0, 1] (max-softmax probabilities); got '
            f'values in [{conf.min():.4g}, {conf.max():.4g}].')
    if not np.isin(hit, (0.0, 1.0)).all():
        raise ValueError('correct must hold only 0/1 (or booleans).')
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    # side='left': edges[i-1] < c <= edges[i]  ->  bins (lo, hi]; 0 -> bin 0
    idx = np.clip(np.searchsorted(edges[1:-1], conf, side='left'), 0,
                  num_bins - 1)
    n = conf.size
    bins, ece, mce = [], 0.0, 0.0
    for b in range(num_bins):
        sel = idx == b
        count = int(sel.sum())
        acc = float(hit[sel].mean()) if count else 0.0
        mean_conf = float(conf[sel].mean()) if count else 0.0
        if count:
            gap = abs(acc - mean_conf)
            ece += count / n * gap
            mce = max(mce, gap)
        bins.append(
            CalibrationBin(float(edges[b]), float(edges[b + 1]), count, acc,
                           mean_conf))
    return CalibrationResult(ece=float(ece),
                             mce=float(mce),
                             accuracy=float(hit.mean()),
                             mean_confidence=float(conf.mean()),
                             num_samples=int(n),
                             bins=bins)


def expected_calibration_error(confidences,
                               correct,
                               num_bins: int = 15) -> float:
    """ECE of a prediction set (see :func:`calibration_bins`)."""
    return calibration_bins(confidences, correct, num_bins).ece


def calibration_from_scores(scores: torch.Tensor,
                            labels: torch.Tensor,
                            num_bins: int = 15) -> CalibrationResult:
    """Calibration of class probabilities.

    Args:
        scores (Tensor): ``[N, K]`` class probabilities (softmax output, as
            mmpretrain's ``pred_score``).
        labels (Tensor): ``[N]`` ground-truth classes.
        num_bins (int): Number of bins. Defaults to 15.

    Returns:
        CalibrationResult: See :func:`calibration_bins`.
    """
    if scores.ndim != 2 or labels.shape != scores.shape[:1]:
        raise ValueError(
            f'scores must be [N, K] and labels [N]; got {tuple(scores.shape)}'
            f' and {tuple(labels.shape)}.')
    conf, pred = scores.float().max(dim=1)
    correct = (pred == labels.to(pred.device)).float()
    return calibration_bins(conf, correct, num_bins)


def plot_reliability(results: Sequence[Tuple[str, CalibrationResult]],
                     path: str) -> None:
    """Reliability diagrams, one column per prediction set, written to
    ``path`` (PNG).

    Top row: accuracy per bin (bars), the bin's mean confidence (black
    line), the gap between them (hatched) and the diagonal of perfect
    calibration. Bottom row: the share of predictions per bin.

    Args:
        results (Sequence[tuple[str, CalibrationResult]]): ``(label,
            result)`` pairs.
        path (str): Output PNG path.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    if not results:
        raise ValueError('plot_reliability needs at least one result.')
    ncols = len(results)
    fig, axes = plt.subplots(2,
                             ncols,
                             figsize=(3.6 * ncols, 4.6),
                             squeeze=False,
                             gridspec_kw=dict(height_ratios=[3, 1]),
                             sharex=True)
    for col, (label, res) in enumerate(results):
        top, bottom = axes[0, col], axes[1, col]
        lows = np.array([b.lower for b in res.bins])
        width = lows[1] - lows[0] if len(lows) > 1 else 1.0
        centers = lows + width / 2
        acc = np.array([b.accuracy for b in res.bins])
        conf = np.array([b.confidence for b in res.bins])
        counts = np.array([b.count for b in res.bins])
        filled = counts > 0
        top.bar(centers[filled],
                acc[filled],
                width=width * 0.95,
                color='#4C72B0',
                edgecolor='black',
                linewidth=0.5,
                label='accuracy')
        gap_lo = np.minimum(acc, conf)[filled]
        gap_h = np.abs(acc - conf)[filled]
        top.bar(centers[filled],
                gap_h,
                bottom=gap_lo,
                width=width * 0.95,
                facecolor='none',
                hatch='///',
                edgecolor='#C44E52',
                linewidth=0.8,
                label='gap to confidence')
        top.hlines(conf[filled],
                   centers[filled] - width * 0.475,
                   centers[filled] + width * 0.475,
                   colors='black',
                   linewidth=1.2,
                   label='mean confidence')
        top.plot([0, 1], [0, 1], '--', color='gray', linewidth=1)
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_title(
            f'{label}\nECE {100 * res.ece:.2f}%  '
            f'acc {100 * res.accuracy:.1f}%',
            fontsize=9)
        if col == 0:
            top.set_ylabel('accuracy')
            top.legend(loc='upper left', fontsize=7)
        bottom.bar(centers,
                   counts / max(res.num_samples, 1),
                   width=width * 0.95,
                   color='#55A868',
                   edgecolor='black',
                   linewidth=0.5)
        bottom.set_xlabel('confidence (max softmax)')
        if col == 0:
            bottom.set_ylabel('share')
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=120)
    plt.close(fig)
