"""GridMix: a regular grid of holes filled from a partner image."""
import math
from typing import Optional, Tuple, Union

import numpy as np
import torch
from mmpretrain.registry import BATCH_AUGMENTS

from .base import derangement
from .mix_plan import (PlannedMix, check_alpha, check_range_pair,
                       sample_beta, uniform_from)

__all__ = ['GridMix', 'grid_hole_mask']

Range = Union[float, Tuple[float, float]]


def grid_hole_mask(img_h: int, img_w: int, crop: Tuple[int, int, int, int],
                   cell: Tuple[int, int], hole: Tuple[int, int],
                   device: Optional[torch.device] = None) -> torch.Tensor:
    """Boolean ``[H, W]`` map of the holes of a grid.

    Inside the crop ``(y1, x1, crop_h, crop_w)``, cells of
    ``cell = (cell_h, cell_w)`` pixels tile the crop from its top-left
    corner; each cell holds a hole of ``hole = (hole_h, hole_w)`` pixels at
    its top-left corner (holes are clipped by the crop).
    """
    y1, x1, crop_h, crop_w = crop
    ys = torch.arange(img_h, device=device) - y1
    xs = torch.arange(img_w, device=device) - x1
    in_y = (ys >= 0) & (ys < crop_h) & (ys.remainder(cell[0]) < hole[0])
    in_x = (xs >= 0) & (xs < crop_w) & (xs.remainder(cell[1]) < hole[1])
    return in_y[:, None] & in_x[None, :]


@BATCH_AUGMENTS.register_module()
class GridMix(PlannedMix):
    r"""GridMix batch augment (`GridMix: Strong regularization through local
    context mapping <https://doi.org/10.1016/j.patcog.2020.107594>`_,
    Pattern Recognition 2021).

    Per batch: draw :math:`\lambda \sim Beta(\alpha, \alpha)`, a crop of
    ``cut_area_ratio`` of the image with aspect ``cut_aspect_ratio`` at a
    uniform position, and ``n_holes`` cells across the crop's width (cell
    height = cell width x ``hole_aspect_ratio``). Each cell gets a hole of
    side ratio :math:`\sqrt{1 - \lambda}` (at least 1 pixel, at most the cell
    minus 1 pixel) at its top-left corner; the holes show the partner image
    (a permutation without fixed points), the rest the own image. Ranges
    ``(min, max)`` are sampled uniformly per batch. The label weight of the
    own image is its exact visible area.

    Implemented from the paper and the reference GridMixup code (crop, grid,
    hole law, per-batch sampling); the per-cell geometry is computed with
    tensor operations.

    Args:
        alpha (float): Beta parameter, > 0. Defaults to 1.0.
        n_holes (int | tuple[int, int]): Cells across the crop width.
            Defaults to (2, 6) (OpenMixup's CIFAR setting).
        hole_aspect_ratio (float | tuple): Cell height / width.
            Defaults to 1.0.
        cut_area_ratio (float | tuple): Crop area / image area in (0, 1].
            Defaults to (0.5, 1.0).
        cut_aspect_ratio (float | tuple): Crop height / width.
            Defaults to (0.5, 2.0).
    """

    def __init__(self,
                 alpha: float = 1.0,
                 n_holes: Union[int, Tuple[int, int]] = (2, 6),
                 hole_aspect_ratio: Range = 1.0,
                 cut_area_ratio: Range = (0.5, 1.0),
                 cut_aspect_ratio: Range = (0.5, 2.0)):
        self.alpha = check_alpha('GridMix', alpha)
        self.n_holes = check_range_pair(
            'GridMix', 'n_holes', n_holes, low=1, integer=True)
        self.hole_aspect_ratio = check_range_pair(
            'GridMix', 'hole_aspect_ratio', hole_aspect_ratio, low=0,
            low_open=True)
        self.cut_area_ratio = check_range_pair(
            'GridMix', 'cut_area_ratio', cut_area_ratio, low=0, high=1,
            low_open=True)
        self.cut_aspect_ratio = check_range_pair(
            'GridMix', 'cut_aspect_ratio', cut_aspect_ratio, low=0,
            low_open=True)

    @staticmethod
    def _crop_size(img_h: int, img_w: int, area: float,
                   aspect: float) -> Tuple[int, int]:
        cut_area = int(img_h * img_w * area)
        cut_w = min(int(math.sqrt(cut_area / aspect)), img_w)
        cut_h = min(int(cut_w * aspect), img_h)
        return cut_h, cut_w

    def _check_geometry(self, img_h: int, img_w: int) -> None:
        """Raise if the most holes cannot fit the narrowest crop."""
        narrowest = min(
            self._crop_size(img_h, img_w, area, aspect)[1]
            for area in self.cut_area_ratio
            for aspect in self.cut_aspect_ratio)
        if self.n_holes[1] > narrowest // 2:
            raise ValueError(
                f'GridMix: n_holes={self.n_holes} is too many for a '
                f'{img_h}x{img_w} image: the narrowest crop (cut_area_ratio='
                f'{self.cut_area_ratio}, cut_aspect_ratio='
                f'{self.cut_aspect_ratio}) is {narrowest} px wide and allows '
                f'at most {narrowest // 2} holes.')

    def build_mix(self,
                  inputs: torch.Tensor,
                  batch_score: Optional[torch.Tensor] = None) -> dict:
        """Draw the grid, partners and label weights.

        Returns:
            dict: ``mask`` [B, 1, H, W] (0 in the holes), ``index`` [B],
            ``lam`` [B] (own visible area), ``grid`` (crop
            ``(y1, x1, h, w)``, cell ``(h, w)`` and hole ``(h, w)`` sizes).
        """
        B, device = inputs.shape[0], inputs.device
        H, W = inputs.shape[-2:]
        self._check_geometry(H, W)
        lam = sample_beta(self.alpha)
        n_holes = uniform_from(self.n_holes, integer=True)
        hole_aspect = uniform_from(self.hole_aspect_ratio)
        area = uniform_from(self.cut_area_ratio)
        aspect = uniform_from(self.cut_aspect_ratio)

        cut_h, cut_w = self._crop_size(H, W, area, aspect)
        y1 = int((H - cut_h) * np.random.random())
        x1 = int((W - cut_w) * np.random.random())
        cell_w = math.ceil(cut_w / n_holes)
        cell_h = max(int(cell_w * hole_aspect), 2)
        ratio = math.sqrt(1 - lam)
        hole_w = min(max(int(cell_w * ratio), 1), cell_w - 1)
        hole_h = min(max(int(cell_h * ratio), 1), cell_h - 1)
        holes = grid_hole_mask(H, W, (y1, x1, cut_h, cut_w),
                               (cell_h, cell_w), (hole_h, hole_w), device)
        mask = (~holes).float()
        return dict(
            mask=mask[None, None].expand(B, 1, H, W),
            index=derangement(B, device),
            lam=mask.mean().expand(B).clone(),
            grid=dict(
                crop=(y1, x1, cut_h, cut_w),
                cell=(cell_h, cell_w),
                hole=(hole_h, hole_w)))

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(alpha={self.alpha}, n_holes='
                f'{self.n_holes}, hole_aspect_ratio={self.hole_aspect_ratio},'
                f' cut_area_ratio={self.cut_area_ratio}, cut_aspect_ratio='
                f'{self.cut_aspect_ratio})')
