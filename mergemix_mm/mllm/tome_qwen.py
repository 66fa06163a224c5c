"""Qwen2.5-VL vision tower: saliency for the MergeMix mask, and why no ToMe.

**ToMe is not run inside the Qwen2.5-VL vision tower.** Bipartite merging is
not sound there, for four independent reasons:

1. *Window attention.* All blocks except ``fullatt_block_indexes`` attend
   inside fixed windows (112 px = 8x8 patches) described by
   ``cu_window_seqlens`` over a fixed, window-permuted token layout. A merged
   token can hold patches of two windows, and the number of tokens per
   window would differ per image and per block, so the windows are no longer
   defined.
2. *2-D rotary embeddings.* Every patch's query and key are rotated by its
   own ``(h, w)`` position. A merged token has no single position; averaging
   rotated features is not a rotation of an averaged position, so the
   pretrained attention geometry breaks.
3. *Patch merger.* ``Qwen2_5_VLPatchMerger`` concatenates every 4
   consecutive tokens (a 2x2 quad) into one LLM token with a ``view``. It
   needs all ``4 * n`` tokens in quad order; ToMe removes an arbitrary,
   per-sample set of tokens.
4. *M-RoPE in the LLM.* ``get_rope_index`` gives image tokens ``(t, h, w)``
   positions on the full ``(H/28) x (W/28)`` grid and expects exactly that
   many image tokens per image.

There is also no CLS token, so "CLS-row attention" does not exist. The
visual-token budget of Qwen2.5-VL is therefore controlled by the image
resolution (``min_pixels`` / ``max_pixels`` of the image processor), and the
tower's attention is used *only for the mask*: the saliency of a patch is the
mean attention it receives (over heads and queries of the same image) at a
full-attention block, summed over each 2x2 quad so there is one score per
LLM token (28-px unit); mixing happens at that unit.

The pixel layout helpers :func:`qwen_unpatchify` / :func:`qwen_patchify`
convert the processor's flattened patches ``[sum(t*h*w), C*T*p*p]`` to images
and back (rows in raster order over merge units, the 4 patches of a unit
contiguous).
"""
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

__all__ = [
    'QWEN_TOME_UNSOUND', 'check_qwen_merge_num', 'check_qwen_saliency_block',
    'qwen_vision_geometry', 'qwen_unpatchify', 'qwen_patchify',
    'qwen_vision_saliency', 'qwen_window_index'
]

#: Short reason given when ToMe is requested for a Qwen2.5-VL tower.
QWEN_TOME_UNSOUND = (
    'token merging inside the Qwen2.5-VL vision tower is not sound (window '
    'attention over fixed windows, per-patch 2-D RoPE, the 2x2 patch merger '
    'and the LLM M-RoPE grid all need the full patch grid); control the '
    'visual-token budget with the image processor min_pixels / max_pixels '
    'instead. See mergemix_mm/mllm/tome_qwen.py.')


def check_qwen_merge_num(merge_num: int) -> None:
    """Raise ValueError for ``merge_num > 0`` on a Qwen2.5-VL model."""
    if merge_num:
        raise ValueError(f'merge_num={merge_num}: {QWEN_TOME_UNSOUND}')


def qwen_vision_geometry(visual: nn.Module) -> Tuple[int, int, int, int]:
    """``(patch_size, temporal_patch_size, merge_size, in_channels)``."""
    cfg = visual.config
    return (int(cfg.patch_size), int(cfg.temporal_patch_size),
            int(cfg.spatial_merge_size), int(cfg.in_channels))


def qwen_unpatchify(rows: Tensor, grid_thw: Sequence[int], patch: int,
                    temporal: int, merge: int, channels: int = 3) -> Tensor:
    """Processor rows of one image -> ``[C, H, W]`` (first temporal frame).

    Args:
        rows (Tensor): ``[t * h * w, C * temporal * patch * patch]``.
        grid_thw (Sequence[int]): ``(t, h, w)`` in patches; ``t`` must be 1.
        patch (int): Patch size.
        temporal (int): Temporal patch size.
        merge (int): Spatial merge size.
        channels (int): Image channels. Defaults to 3.

    Returns:
        Tensor: ``[C, h * patch, w * patch]``.
    """
    t, h, w = (int(v) for v in grid_thw)
    if t != 1:
        raise ValueError(f'only still images are supported (grid t={t})')
    if rows.shape != (h * w, channels * temporal * patch * patch):
        raise ValueError(
            f'rows of shape {tuple(rows.shape)} do not match grid {h}x{w} '
            f'with patch {patch}, temporal {temporal}, channels {channels}')
    x = rows.reshape(h // merge, w // merge, merge, merge, channels, temporal,
                     patch, patch)[..., 0, :, :]
    # [h/m, w/m, m, m, C, p, p] -> [C, h/m, m, p, w/m, m, p]
    x = x.permute(4, 0, 2, 5, 1, 3, 6)
    return x.reshape(channels, h * patch, w * patch)


def qwen_patchify(image: Tensor, patch: int, temporal: int,
                  merge: int) -> Tensor:
    """Inverse of :func:`qwen_unpatchify` (the frame is repeated
    ``temporal`` times, as the processor does for still images).

    Args:
        image (Tensor): ``[C, H, W]``, ``H`` and ``W`` multiples of
            ``patch * merge``.

    Returns:
        Tensor: ``[(H/p) * (W/p), C * temporal * p * p]``.
    """
    C, H, W = image.shape
    h, w = H // patch, W // patch
    if h * patch != H or w * patch != W or h % merge or w % merge:
        raise ValueError(f'image of size {H}x{W} is not a multiple of '
                         f'patch*merge={patch * merge}')
    x = image.reshape(C, h // merge, merge, patch, w // merge, merge, patch)
    x = x.permute(1, 4, 2, 5, 0, 3, 6)  # [h/m, w/m, m, m, C, p, p]
    x = x.unsqueeze(5).expand(-1, -1, -1, -1, -1, temporal, -1, -1)
    return x.reshape(h * w, C * temporal * patch * patch)


def qwen_window_index(visual: nn.Module, grid_thw: Tensor) -> Tensor:
    """Window permutation of merge units used inside the tower.

    ``hidden.reshape(S / 4, 4, D)[window_index]`` is the token order the
    blocks see; ``argsort(window_index)`` restores raster order.
    """
    if hasattr(visual, 'get_window_index'):  # transformers 4.x
        return visual.get_window_index(grid_thw)[0]
    from transformers.vision_utils import get_vision_window_index
    return get_vision_window_index(
        grid_thw,
        spatial_merge_size=visual.spatial_merge_size,
        window_size=visual.window_size,
        patch_size=visual.patch_size)[0]


#: Largest attention-probability block (heads x queries x keys, float32
#: elements) the saliency pass holds at once; queries are processed in
#: chunks below it (2**26 elements: 256 MB), so that a high-resolution image
#: (thousands of patches) does not need its whole ``[H, n, n]`` matrix.
SALIENCY_CHUNK_ELEMENTS = 2**26


class _StopTower(Exception):
    """Raised by the saliency hook to skip the blocks after it."""


def check_qwen_saliency_block(visual: nn.Module,
                              block_index: Optional[int] = None) -> int:
    """The full-attention block used for the saliency.

    Args:
        visual (nn.Module): ``Qwen2_5_VisionTransformerPretrainedModel``.
        block_index (int, optional): ``qwen_saliency_block``. Defaults to
            None, i.e. the last one in ``fullatt_block_indexes``.

    Returns:
        int: The block index.

    Raises:
        ValueError: If the block is out of range or not a full-attention
            block, naming ``qwen_saliency_block``.
    """
    full = list(visual.config.fullatt_block_indexes)
    depth = len(visual.blocks)
    if block_index is None:
        if not full:
            raise ValueError(
                'the Qwen2.5-VL tower has no full-attention block (its '
                'config fullatt_block_indexes is empty), and the MergeMix '
                'saliency (qwen_saliency_block) needs one')
        block_index = full[-1]
    if not 0 <= block_index < depth:
        raise ValueError(f'qwen_saliency_block={block_index} is out of range '
                         f'for a {depth}-block vision tower')
    if block_index not in full:
        raise ValueError(
            f'qwen_saliency_block={block_index} is a window-attention block; '
            f'use one of fullatt_block_indexes={full} so that every patch '
            'attends to the whole image')
    return block_index


def qwen_vision_saliency(visual: nn.Module,
                         pixel_values: Tensor,
                         grid_thw: Tensor,
                         block_index: Optional[int] = None) -> List[Tensor]:
    """Per-unit saliency of each image from a full-attention block.

    The saliency of a patch is the attention it receives at block
    ``block_index``, averaged over heads and over the queries of the same
    image; a unit (one LLM token, ``merge x merge`` patches) sums its
    patches. The tower runs without gradient and stops after that block;
    the attention is computed in query chunks of at most
    :data:`SALIENCY_CHUNK_ELEMENTS` probabilities.

    Args:
        visual (nn.Module): ``Qwen2_5_VisionTransformerPretrainedModel``.
        pixel_values (Tensor): Processor rows of the images.
        grid_thw (Tensor): ``LongTensor[num_images, 3]``.
        block_index (int, optional): A full-attention block. Defaults to
            None, i.e. the last one in ``fullatt_block_indexes``.

    Returns:
        list[Tensor]: One ``[(h/m) * (w/m)]`` float tensor per image, raster
        order over units (the order of the image's LLM tokens).
    """
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as mq

    block_index = check_qwen_saliency_block(visual, block_index)
    _, _, merge, _ = qwen_vision_geometry(visual)
    unit = merge * merge
    captured = {}

    def hook(module, args, kwargs):
        hidden = args[0] if args else kwargs['hidden_states']
        cu = kwargs.get('cu_seqlens', args[1] if len(args) > 1 else None)
        cos, sin = kwargs['position_embeddings']
        S = hidden.shape[0]
        q, k, _ = module.qkv(hidden).reshape(S, 3, module.num_heads,
                                             -1).permute(1, 0, 2, 3).unbind(0)
        q, k = mq.apply_rotary_pos_emb_vision(q, k, cos, sin)
        received = hidden.new_zeros(S, dtype=torch.float)
        bounds = cu.tolist()
        for s, e in zip(bounds[:-1], bounds[1:]):
            qi = q[s:e].transpose(0, 1).float() * module.scaling  # [H, n, d]
            ki = k[s:e].transpose(0, 1).float()
            heads, n = qi.shape[:2]
            chunk = max(1, SALIENCY_CHUNK_ELEMENTS // (heads * n))
            total = qi.new_zeros(n)
            for c in range(0, n, chunk):
                probs = (qi[:, c:c + chunk] @ ki.transpose(1, 2)).softmax(-1)
                total += probs.sum(dim=(0, 1))
            received[s:e] = total / (heads * n)
        captured['received'] = received
        raise _StopTower

    handle = visual.blocks[block_index].attn.register_forward_pre_hook(
        hook, with_kwargs=True)
    try:
        with torch.no_grad():
            visual(pixel_values.to(visual.dtype), grid_thw=grid_thw)
    except _StopTower:
        pass
    finally:
        handle.remove()
    if 'received' not in captured:  # pragma: no cover
        raise RuntimeError('the saliency hook did not run')
    window_units = captured['received'].reshape(-1, unit).sum(-1)
    window_index = qwen_window_index(visual, grid_thw).to(
        window_units.device)
    raster = torch.empty_like(window_units)
    raster[window_index] = window_units  # unit at window slot j is index[j]
    sizes = (grid_thw.prod(-1) // unit).tolist()
    return list(torch.split(raster, sizes))
