"""MergeMix mask builder for the MLLM path (pure functions over tensors).

The loser image keeps the ``k = floor(lam * N)`` most salient patches of the
clean image and takes every other patch from an in-batch partner
(``ALGORITHM.md`` §6.2, B1, B2, B8). Saliency is the CLS-row attention of the
vision tower recovered to the patch grid through the ToMe source map
(recover, then top-k: A2), so the loser keeps *exactly* ``k`` patches of the
original. ``topk_space='merged'`` reproduces the official LLaVA order (top-k
over merged tokens, then expand), whose realised kept fraction differs from
``lam`` per sample.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    'derangement', 'random_partner', 'topk_keep_mask', 'merged_topk_keep_mask',
    'upsample_patch_mask', 'mix_with_mask', 'grouped_partner'
]


def derangement(n: int,
                device: Optional[torch.device] = None,
                generator: Optional[torch.Generator] = None) -> Tensor:
    """A random permutation of ``range(n)`` without fixed points.

    Draws ``randperm`` until it has no fixed point (probability about
    ``1/e`` per draw) and falls back to a random cyclic shift after 10
    draws, so the result is always a derangement.

    Args:
        n (int): Size; must be >= 2.
        device (torch.device, optional): Device of the result.
            Defaults to None.
        generator (torch.Generator, optional): RNG. Defaults to None.

    Returns:
        Tensor: ``LongTensor[n]`` with ``perm[i] != i`` for every ``i``.
    """
    if n < 2:
        raise ValueError(f'a derangement needs n >= 2 elements, got n={n}')
    ar = torch.arange(n, device=device)
    for _ in range(10):
        perm = torch.randperm(n, generator=generator).to(device)
        if not (perm == ar).any():
            return perm
    shift = int(torch.randint(1, n, (1, ), generator=generator))
    return (ar + shift) % n


def random_partner(n: int,
                   device: Optional[torch.device] = None,
                   generator: Optional[torch.Generator] = None) -> Tensor:
    """``randperm(n)``; self-pairs allowed (``compat='llava'`` partner)."""
    return torch.randperm(n, generator=generator).to(device)


def grouped_partner(groups: Sequence, allow_self: bool = False,
                    device: Optional[torch.device] = None,
                    generator: Optional[torch.Generator] = None
                    ) -> Tuple[Tensor, Tensor]:
    """Partners drawn only among samples of the same group (e.g. same size).

    Args:
        groups (Sequence): One hashable group key per sample.
        allow_self (bool): Use ``randperm`` inside each group (self-pairs
            allowed) instead of a derangement. Defaults to False.
        device (torch.device, optional): Device of the results.
        generator (torch.Generator, optional): RNG. Defaults to None.

    Returns:
        tuple[Tensor, Tensor]: ``partner`` ``LongTensor[n]`` (index into the
        samples; ``i`` itself where no partner exists) and ``valid``
        ``BoolTensor[n]`` (False for samples alone in their group).
    """
    n = len(groups)
    partner = torch.arange(n, device=device)
    valid = torch.zeros(n, dtype=torch.bool, device=device)
    members = {}
    for i, key in enumerate(groups):
        members.setdefault(key, []).append(i)
    for idx in members.values():
        if len(idx) < 2:
            continue
        idx_t = torch.tensor(idx, device=device)
        perm = (random_partner if allow_self else derangement)(
            len(idx), device=device, generator=generator)
        partner[idx_t] = idx_t[perm]
        valid[idx_t] = True
    return partner, valid


def _check_scores_lam(scores: Tensor, lam: float) -> int:
    if scores.dim() != 2:
        raise ValueError('scores must have shape [B, N] (one score per '
                         f'patch), got {tuple(scores.shape)}')
    if not 0. <= float(lam) <= 1.:
        raise ValueError(f'lam={lam!r} must lie in [0, 1]')
    nan_rows = torch.isnan(scores).any(dim=1)
    if nan_rows.any():
        raise ValueError('scores contain NaN in samples '
                         f'{nan_rows.nonzero().flatten().tolist()}; the '
                         'saliency (attention) is not finite')
    return int(float(lam) * scores.shape[1])


def topk_keep_mask(scores: Tensor, lam: float) -> Tensor:
    """Keep the ``k = floor(lam * N)`` highest-scoring patches of each image.

    Args:
        scores (Tensor): ``[B, N]`` saliency per patch (recovered to the full
            patch grid).
        lam (float): Fraction of the clean image to keep, in ``[0, 1]``.

    Returns:
        Tensor: ``BoolTensor[B, N]``; True = patch kept from the clean image.
        Every row has exactly ``k`` True entries.

    Raises:
        ValueError: If ``scores`` is not ``[B, N]`` or contains NaN, or
            ``lam`` lies outside ``[0, 1]``.
    """
    k = _check_scores_lam(scores, lam)
    keep = torch.zeros_like(scores, dtype=torch.bool)
    if k > 0:
        idx = scores.detach().float().topk(k, dim=1).indices
        keep.scatter_(1, idx, True)
    return keep


def merged_topk_keep_mask(merged_scores: Tensor, source: Tensor, lam: float,
                          num_extra_tokens: int = 1) -> Tensor:
    """Official LLaVA order: top-k over merged tokens, then expand to patches.

    ``k = floor(lam * K)`` with ``K`` the number of merged non-CLS tokens;
    every patch whose merged token is among the top ``k`` is kept, so the
    kept *area* is the total size of those groups, not ``k / N``.

    Args:
        merged_scores (Tensor): ``[B, T]`` scores of the merged tokens
            (including the leading extra tokens, which are never selected).
        source (Tensor): ``LongTensor[B, N0]`` source map into the merged
            token space (``N0 = num_extra_tokens + N``).
        lam (float): Nominal mixing ratio in ``[0, 1]``.
        num_extra_tokens (int): Leading non-patch tokens. Defaults to 1.

    Returns:
        Tensor: ``BoolTensor[B, N]``.
    """
    patch_scores = merged_scores[:, num_extra_tokens:]
    k = _check_scores_lam(patch_scores, lam)
    B, T = merged_scores.shape
    selected = torch.zeros(B, T, dtype=torch.bool,
                           device=merged_scores.device)
    if k > 0:
        idx = patch_scores.detach().float().topk(k, dim=1).indices
        selected.scatter_(1, idx + num_extra_tokens, True)
    return selected.gather(1, source[:, num_extra_tokens:])


def upsample_patch_mask(mask: Tensor, grid: Tuple[int, int],
                        unit: int) -> Tensor:
    """Patch mask ``[B, h*w]`` -> pixel mask ``[B, 1, h*unit, w*unit]``.

    Args:
        mask (Tensor): ``[B, h * w]`` (row-major over the grid), bool or
            float.
        grid (tuple[int, int]): ``(h, w)``.
        unit (int): Pixels per patch side.

    Returns:
        Tensor: Float mask, nearest-neighbour upsampled.
    """
    h, w = grid
    if mask.shape[1] != h * w:
        raise ValueError(f'mask has {mask.shape[1]} patches but the grid '
                         f'{h}x{w} has {h * w}')
    m = mask.reshape(mask.shape[0], 1, h, w).float()
    return F.interpolate(m, scale_factor=unit, mode='nearest')


def mix_with_mask(images: Tensor, partner: Tensor,
                  keep_pixels: Tensor) -> Tensor:
    """``keep * x + (1 - keep) * x[partner]``.

    Args:
        images (Tensor): ``[B, C, H, W]``.
        partner (Tensor): ``LongTensor[B]``.
        keep_pixels (Tensor): ``[B, 1, H, W]`` in ``[0, 1]``; 1 keeps the
            clean pixel.

    Returns:
        Tensor: Mixed images, same shape and dtype as ``images``.
    """
    if keep_pixels.shape[-2:] != images.shape[-2:]:
        raise ValueError(
            f'mask of size {tuple(keep_pixels.shape[-2:])} does not match '
            f'images of size {tuple(images.shape[-2:])}')
    keep = keep_pixels.to(images.dtype)
    return keep * images + (1 - keep) * images[partner]
