"""Box geometry shared by the box-based baselines (TransMix, SaliencyMix,
ResizeMix, ...).

Boxes are ``(y1, y2, x1, x2)`` integer pixel bounds, end-exclusive.
"""
import math
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    'Box', 'centered_box', 'random_box', 'cutmix_box', 'box_area',
    'box_keep_mask', 'cells_to_pixels', 'downsample_mask'
]

Box = Tuple[int, int, int, int]


def centered_box(cy: int, cx: int, cut_h: int, cut_w: int, img_h: int,
                 img_w: int) -> Box:
    """Box of (up to) ``cut_h x cut_w`` centred on ``(cy, cx)``, clipped to
    the image.

    The half sizes are ``cut // 2`` on both sides, as CutMix's reference
    code (so odd sizes lose one pixel).
    """
    y1 = int(np.clip(cy - cut_h // 2, 0, img_h))
    y2 = int(np.clip(cy + cut_h // 2, 0, img_h))
    x1 = int(np.clip(cx - cut_w // 2, 0, img_w))
    x2 = int(np.clip(cx + cut_w // 2, 0, img_w))
    return y1, y2, x1, x2


def random_box(cut_h: int, cut_w: int, img_h: int, img_w: int) -> Box:
    """``cut_h x cut_w`` box at a uniform random centre, clipped."""
    cy = int(np.random.randint(img_h))
    cx = int(np.random.randint(img_w))
    return centered_box(cy, cx, cut_h, cut_w, img_h, img_w)


def cutmix_box(lam: float, img_h: int, img_w: int) -> Box:
    """CutMix's box law: sides ``int(H * sqrt(1 - lam))`` and
    ``int(W * sqrt(1 - lam))`` at a uniform centre, clipped."""
    ratio = math.sqrt(max(0.0, 1.0 - lam))
    return random_box(int(img_h * ratio), int(img_w * ratio), img_h, img_w)


def box_area(box: Box) -> int:
    """Pixel area of a box."""
    y1, y2, x1, x2 = box
    return max(0, y2 - y1) * max(0, x2 - x1)


def box_keep_mask(batch_size: int, img_h: int, img_w: int, box: Box,
                  device: torch.device,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[B, 1, H, W]`` mask, 1 outside ``box`` (own image), 0 inside."""
    y1, y2, x1, x2 = box
    mask = torch.ones(1, 1, img_h, img_w, device=device, dtype=dtype)
    mask[..., y1:y2, x1:x2] = 0
    return mask.expand(batch_size, 1, img_h, img_w)


def cells_to_pixels(cells: torch.Tensor, cell_h: int, cell_w: int,
                    img_h: int, img_w: int) -> torch.Tensor:
    """Nearest upsampling of a ``[B, h, w]`` cell mask to ``[B, 1, H, W]``
    (cells of ``cell_h x cell_w`` pixels, cropped to the image)."""
    pix = cells.repeat_interleave(cell_h, dim=1).repeat_interleave(
        cell_w, dim=2)
    return pix[:, None, :img_h, :img_w]


def downsample_mask(mask: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Nearest downsampling of a ``[B, 1, H, W]`` mask to ``[B, h, w]``.

    ``F.interpolate(mode='nearest')`` picks, for cell ``(i, j)``, the pixel
    ``(floor(i * H / h), floor(j * W / w))``: the top-left pixel of each
    patch when ``H`` is a multiple of ``h`` (as OpenMixup's TransMix).
    """
    return F.interpolate(mask.float(), size=tuple(size), mode='nearest')[:, 0]
