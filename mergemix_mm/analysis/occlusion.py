"""Robustness to random patch occlusion (Fig. 5 of the MergeMix paper).

A fraction ``f`` of the patch grid is hidden in every test image: exactly
``floor(f * N + 0.5)`` (``f * N`` rounded half up) of the ``N`` patches,
chosen uniformly at random per image, are set to ``fill`` *after*
normalisation. With the default ``fill = 0`` an occluded patch shows the
dataset mean colour (the data preprocessor's ``mean``). The random choice
depends only on the seed, the batch size and order and the fraction, so
every checkpoint evaluated with the same seed and loader sees the same
occlusions.
"""
import math
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from ..utils.checkpoint_safety import atomic_save_figure

__all__ = [
    'DEFAULT_FRACTIONS', 'occlusion_patch_size', 'random_patch_mask',
    'occlude_patches', 'occlusion_curve', 'plot_occlusion'
]

#: 0 %, 10 %, ..., 100 %.
DEFAULT_FRACTIONS: Tuple[float, ...] = tuple(i / 10 for i in range(11))


def _pair(value, name: str) -> Tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2 or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1
            for v in value)):
        raise ValueError(f'{name}={value!r} must be a positive int or a pair '
                         'of positive ints.')
    return int(value[0]), int(value[1])


def occlusion_patch_size(model: nn.Module, patch_size=None) -> Tuple[int, int]:
    """The occlusion grid's cell size.

    ``patch_size`` wins when given; otherwise the backbone's patch size is
    used when it is a ViT (:func:`mergemix_mm.models.tome.vit_geometry`).

    Args:
        model (nn.Module): A classifier with a ``backbone`` (or a backbone).
        patch_size (int | tuple[int, int], optional): Explicit cell size.
            Defaults to None.

    Returns:
        tuple[int, int]: ``(ph, pw)`` in pixels.

    Raises:
        ValueError: If ``patch_size`` is None and the backbone is not a
            supported ViT.
    """
    if patch_size is not None:
        return _pair(patch_size, 'patch_size')
    from ..models.tome import vit_geometry
    backbone = getattr(model, 'backbone', model)
    try:
        return tuple(vit_geometry(backbone).patch_size)
    except ValueError as err:
        raise ValueError(
            f'cannot derive a patch size from the {type(backbone).__name__} '
            'backbone (not a supported ViT); pass --patch-size.') from err


def random_patch_mask(
        batch_size: int,
        grid: Tuple[int, int],
        fraction: float,
        generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``[B, h, w]`` bool, True on exactly
    ``floor(fraction * h * w + 0.5)``
    random cells per image.

    The random numbers are drawn on the CPU, so the result does not depend on
    the device the model runs on.

    Args:
        batch_size (int): B.
        grid (tuple[int, int]): ``(h, w)`` cells.
        fraction (float): Share of occluded cells, in [0, 1].
        generator (torch.Generator, optional): CPU RNG. Defaults to None.

    Returns:
        Tensor: The occlusion mask (CPU).
    """
    if not isinstance(fraction, (int, float)) or isinstance(
            fraction, bool) or not 0 <= fraction <= 1:
        raise ValueError(f'fraction={fraction!r} must be a number in [0, 1].')
    h, w = grid
    n = h * w
    k = int(math.floor(fraction * n + 0.5))
    noise = torch.rand(batch_size, n, generator=generator)
    ranks = noise.argsort(dim=1).argsort(dim=1)
    return (ranks < k).reshape(batch_size, h, w)


def occlude_patches(inputs: torch.Tensor,
                    fraction: float,
                    patch_size,
                    generator: Optional[torch.Generator] = None,
                    fill: float = 0.0) -> torch.Tensor:
    """Hide a random ``fraction`` of the patches of every image.

    Cells tile the image from the top-left corner; a last row / column of
    cells may be cut by the border (when the size is not divisible).

    Args:
        inputs (Tensor): Normalised images ``[B, C, H, W]``.
        fraction (float): Share of occluded cells, in [0, 1].
        patch_size (int | tuple[int, int]): Cell size in pixels.
        generator (torch.Generator, optional): CPU RNG. Defaults to None.
        fill (float): Value written into occluded cells (0 = the dataset
            mean after normalisation). Defaults to 0.0.

    Returns:
        Tensor: A new tensor; ``inputs`` is not modified.
    """
    if inputs.ndim != 4:
        raise ValueError(f'inputs must be [B, C, H, W], got shape '
                         f'{tuple(inputs.shape)}.')
    ph, pw = _pair(patch_size, 'patch_size')
    B, _, H, W = inputs.shape
    grid = (math.ceil(H / ph), math.ceil(W / pw))
    cells = random_patch_mask(B, grid, fraction, generator)
    mask = cells.to(inputs.device).repeat_interleave(ph, 1).repeat_interleave(
        pw, 2)[:, None, :H, :W]
    return torch.where(mask, torch.full_like(inputs, fill), inputs)


def occlusion_curve(model: nn.Module,
                    loader,
                    fractions: Sequence[float] = DEFAULT_FRACTIONS,
                    patch_size=None,
                    seed: int = 0,
                    fill: float = 0.0,
                    max_batches: Optional[int] = None,
                    progress: bool = True,
                    desc: str = 'occlusion') -> Dict[str, list]:
    """Top-1 accuracy at each occlusion fraction.

    Every batch is preprocessed once and classified once per fraction (the
    test-time path of ``model.val_step``). The masks come from one CPU
    generator seeded with ``seed``, drawn batch by batch and fraction by
    fraction, so two models evaluated on the same loader see the same
    occlusions.

    Args:
        model (nn.Module): An mmpretrain classifier in eval mode.
        loader: Test dataloader (unshuffled).
        fractions (Sequence[float]): Occluded shares, each in [0, 1].
            Defaults to :data:`DEFAULT_FRACTIONS`.
        patch_size (int | tuple[int, int], optional): Cell size; None uses
            the ViT's patch size (see :func:`occlusion_patch_size`).
            Defaults to None.
        seed (int): RNG seed. Defaults to 0.
        fill (float): Value of occluded pixels after normalisation.
            Defaults to 0.0.
        max_batches (int, optional): Evaluate only the first batches.
            Defaults to None (all).
        progress (bool): Show a tqdm bar. Defaults to True.
        desc (str): Bar label. Defaults to ``'occlusion'``.

    Returns:
        dict: ``fractions`` (list), ``top1`` (list, percent, one per
        fraction), ``num_samples`` (int), ``patch_size`` ([ph, pw]).
    """
    from .loading import batch_labels, preprocessed_batches
    fractions = [float(f) for f in fractions]
    if not fractions:
        raise ValueError('fractions is empty.')
    for f in fractions:
        if not 0 <= f <= 1:
            raise ValueError(f'fraction {f!r} must lie in [0, 1].')
    ph, pw = occlusion_patch_size(model, patch_size)
    generator = torch.Generator().manual_seed(int(seed))
    correct = [0] * len(fractions)
    total_samples = 0
    with torch.no_grad():
        for _, inputs, samples in preprocessed_batches(
                model, loader, max_batches, progress, desc):
            labels = batch_labels(samples).cpu()
            for i, frac in enumerate(fractions):
                occluded = occlude_patches(inputs, frac, (ph, pw), generator,
                                           fill)
                preds = model(occluded, samples, mode='predict')
                pred = torch.stack([p.pred_score
                                    for p in preds]).argmax(1).cpu()
                correct[i] += int((pred == labels).sum())
            total_samples += labels.numel()
    if total_samples == 0:
        raise ValueError('the dataloader yielded no samples.')
    return dict(fractions=fractions,
                top1=[100.0 * c / total_samples for c in correct],
                num_samples=total_samples,
                patch_size=[ph, pw])


def plot_occlusion(curves: Dict[str, dict],
                   path: str,
                   title: Optional[str] = None) -> None:
    """Top-1 vs occluded fraction, one line per model, written to ``path``.

    Args:
        curves (dict[str, dict]): Label -> result of
            :func:`occlusion_curve`.
        path (str): Output PNG path.
        title (str, optional): Figure title. Defaults to None.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    if not curves:
        raise ValueError('plot_occlusion needs at least one curve.')
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    markers = 'osD^vP*X'
    for i, (label, curve) in enumerate(curves.items()):
        ax.plot([100 * f for f in curve['fractions']],
                curve['top1'],
                marker=markers[i % len(markers)],
                markersize=4,
                label=label)
    ax.set_xlabel('occluded patches (%)')
    ax.set_ylabel('top-1 accuracy (%)')
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=120)
    plt.close(fig)
