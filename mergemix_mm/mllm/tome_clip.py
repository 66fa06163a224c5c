"""Token merging (ToMe) inside a Hugging Face CLIP vision tower (LLaVA-1.5).

:func:`clip_tome_forward` runs the stock ``CLIPVisionModel`` sub-modules
(embeddings, pre-norm, encoder layers) block by block up to the feature layer
that LLaVA feeds to its projector (``vision_feature_layer``, ``-2`` for
LLaVA-1.5), merging tokens after each block's attention and before its MLP
with the functional ToMe core of :mod:`mergemix_mm.models.tome` (per-sample
key metric, CLS protected at index 0, size-weighted average). Nothing is
patched or swapped: the same module weights run, so with no merging the
output equals ``hidden_states[vision_feature_layer]`` of the stock tower.

It also returns what MergeMix needs for the mask (``ALGORITHM.md`` B2): the
CLS-row attention of ``attn_layer`` (default: the feature layer), averaged
over heads and computed on the tokens *entering* that block, with the source
map of those same tokens, so that the recovered scores are consistent (A1).

The total number of merged tokens ``merge_num`` is spread over the blocks
that run with :func:`~mergemix_mm.models.tome.schedule_from_merge_num`, so
the LLM receives exactly ``N - merge_num`` patch tokens (e.g. 576 - 288).

Merging outputs ``[CLS, unmerged A, B]`` (A and B alternate over the
sequence), so the merged tokens leave the tower out of raster order
(``token_order='merged'``, the default and the official MergeMix LLaVA
code). ``'raster'`` puts them back in raster order of the first patch each
holds, the order of un-merged tokens.
"""
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mergemix_mm.models.tome import (check_schedule, init_source, recover,
                                     reorder_tokens, schedule_from_merge_num,
                                     source_order)
from mergemix_mm.models.tome.functional import (attention, merge_tokens,
                                                size_log_bias)

__all__ = [
    'CLIPToMeOutput', 'clip_tower_parts', 'clip_geometry',
    'clip_feature_depth', 'clip_merge_schedule', 'clip_tome_forward',
    'TOKEN_ORDERS'
]

#: Orders of the tokens leaving the ToMe tower (see the module docstring).
TOKEN_ORDERS = ('merged', 'raster')


class CLIPToMeOutput(NamedTuple):
    """Result of :func:`clip_tome_forward`.

    Attributes:
        hidden_states (Tensor): ``[B, 1 + N - merge_num, D]`` output of the
            feature layer (CLS first, then the patch tokens in
            ``token_order``), what LLaVA's projector consumes.
        size (Tensor | None): ``[B, T, 1]`` token sizes (None if nothing was
            merged).
        source (Tensor): ``LongTensor[B, 1 + N]`` original token -> index in
            ``hidden_states``.
        cls_attn (Tensor | None): ``[B, T_l]`` CLS-row attention of
            ``attn_layer`` (post-softmax, mean over heads, detached) over the
            tokens entering that block.
        attn_source (Tensor | None): ``LongTensor[B, 1 + N]`` source map of
            the tokens entering ``attn_layer``.
        patch_scores (Tensor | None): ``[B, N]`` ``cls_attn`` recovered to
            the patch grid (row-major).
        grid (tuple[int, int]): Patch grid ``(h, w)``.
        token_counts (list[int]): Tokens entering each block that ran, then
            the final count.
    """
    hidden_states: Tensor
    size: Optional[Tensor]
    source: Tensor
    cls_attn: Optional[Tensor]
    attn_source: Optional[Tensor]
    patch_scores: Optional[Tensor]
    grid: Tuple[int, int]
    token_counts: List[int]


def clip_tower_parts(vision_tower: nn.Module) -> nn.Module:
    """The module that owns ``embeddings``, ``pre_layrnorm`` and ``encoder``.

    transformers 5.x flattens ``CLIPVisionModel``; 4.x nests it under
    ``.vision_model``.
    """
    inner = getattr(vision_tower, 'vision_model', vision_tower)
    for name in ('embeddings', 'pre_layrnorm', 'encoder'):
        if not hasattr(inner, name):
            raise TypeError(
                f'{type(vision_tower).__name__} is not a CLIP vision tower '
                f'(no {name!r}); MergeMix ToMe supports CLIPVisionModel.')
    return inner


def clip_geometry(vision_tower: nn.Module) -> Tuple[int, int, int]:
    """``(image_size, patch_size, num_layers)`` of a CLIP vision tower."""
    cfg = vision_tower.config
    return int(cfg.image_size), int(cfg.patch_size), int(
        cfg.num_hidden_layers)


def clip_feature_depth(num_layers: int, feature_layer: int) -> int:
    """Number of encoder blocks that produce ``hidden_states[feature_layer]``.

    ``hidden_states[0]`` is the embedding output and ``hidden_states[i]`` the
    output of block ``i - 1``; ``-2`` with 24 blocks means 23 blocks run.
    """
    if isinstance(feature_layer, bool) or not isinstance(feature_layer, int):
        raise ValueError(
            f'vision_feature_layer={feature_layer!r} must be a single int for '
            'the MergeMix vision tower (lists of layers are not supported).')
    n_states = num_layers + 1
    if not -n_states <= feature_layer < n_states:
        raise ValueError(f'vision_feature_layer={feature_layer} is out of '
                         f'range for a {num_layers}-block vision tower')
    depth = feature_layer % n_states
    if depth == 0:
        raise ValueError('vision_feature_layer selects the embedding output; '
                         'MergeMix needs at least one attention block.')
    return depth


def clip_merge_schedule(num_patches: int, depth: int,
                        merge_num: int) -> List[int]:
    """``r`` per block so that exactly ``merge_num`` patch tokens merge.

    Raises:
        ValueError: If ``merge_num`` is negative or cannot be merged by
            ``depth`` blocks of ``1 + num_patches`` tokens.
    """
    if isinstance(merge_num, bool) or not isinstance(merge_num, int):
        raise ValueError(f'merge_num={merge_num!r} must be an int')
    if not 0 <= merge_num < num_patches:
        raise ValueError(
            f'merge_num={merge_num} must lie in [0, {num_patches}) for a '
            f'vision tower with {num_patches} patch tokens')
    if merge_num == 0:
        return [0] * depth
    r_list = schedule_from_merge_num(depth, merge_num)
    try:
        check_schedule(r_list, num_patches + 1, 1, setting='merge_num')
        return r_list
    except ValueError:
        pass
    # Shallow towers (tests, tiny demos): the decreasing schedule may ask a
    # block for more than half of its tokens; carry the excess forward.
    feasible, carry, tokens = [], 0, num_patches + 1
    for r in r_list:
        cap = (tokens - 1) // 2
        take = min(r + carry, cap)
        carry += r - take
        feasible.append(take)
        tokens -= take
    if carry:
        raise ValueError(
            f'merge_num={merge_num} cannot be merged by {depth} blocks of '
            f'{num_patches + 1} tokens (each block merges at most half of '
            'its tokens)')
    return feasible


def _block(layer: nn.Module, x: Tensor, size: Optional[Tensor],
           source: Tensor, r: int, prop_attn: bool,
           want_cls_attn: bool):
    """One CLIP encoder layer with ToMe between attention and MLP."""
    attn = layer.self_attn
    B, T, D = x.shape
    heads, head_dim = attn.num_heads, attn.head_dim
    h = layer.layer_norm1(x)
    q = attn.q_proj(h).view(B, T, heads, head_dim).transpose(1, 2)
    k = attn.k_proj(h).view(B, T, heads, head_dim).transpose(1, 2)
    v = attn.v_proj(h).view(B, T, heads, head_dim).transpose(1, 2)
    dropout_p = float(attn.dropout) if attn.training else 0.
    out, _ = attention(q, k, v, size=size, prop_attn=prop_attn,
                       dropout_p=dropout_p, scale=attn.scale)
    x = x + attn.out_proj(out.transpose(1, 2).reshape(B, T, D))
    cls_attn = None
    if want_cls_attn:
        with torch.no_grad():
            logits = (q[:, :, :1].float() * attn.scale) @ k.float().transpose(
                -2, -1)
            if prop_attn and size is not None:
                logits = logits + size_log_bias(size, logits.dtype)
            cls_attn = logits.softmax(-1).mean(1)[:, 0]  # [B, T]
    in_source = source
    x, size, source = merge_tokens(x, size, source, k, r, num_protected=1)
    x = x + layer.mlp(layer.layer_norm2(x))
    return x, size, source, cls_attn, in_source


def clip_tome_forward(vision_tower: nn.Module,
                      pixel_values: Tensor,
                      merge_num: int = 0,
                      feature_layer: int = -2,
                      attn_layer: Optional[int] = None,
                      prop_attn: bool = False,
                      need_attn: bool = False,
                      r_list: Optional[Sequence[int]] = None,
                      token_order: str = 'merged') -> CLIPToMeOutput:
    """ToMe forward of a HF CLIP vision tower up to the feature layer.

    Args:
        vision_tower (nn.Module): ``CLIPVisionModel`` (e.g.
            ``LlavaForConditionalGeneration.model.vision_tower``).
        pixel_values (Tensor): ``[B, 3, S, S]`` with ``S`` the tower's
            ``image_size``.
        merge_num (int): Patch tokens merged in total (``0``: no ToMe).
            Defaults to 0.
        feature_layer (int): LLaVA's ``vision_feature_layer``.
            Defaults to -2.
        attn_layer (int, optional): 0-based block whose CLS-row attention is
            returned; must run (``< depth``). Defaults to None, i.e. the last
            block that runs (the feature layer).
        prop_attn (bool): Proportional attention (``+ log size``).
            Defaults to False, as in MergeMix.
        need_attn (bool): Return the CLS-row attention and the recovered
            patch scores. Defaults to False.
        r_list (Sequence[int], optional): Explicit ``r`` per block that runs;
            overrides ``merge_num``. Defaults to None.
        token_order (str): ``'merged'``: the output tokens in the order
            merging leaves them (official code); ``'raster'``: in raster
            order of the first patch each holds (CLS first). Without merging
            both are the tower's own order. Defaults to ``'merged'``.

    Returns:
        CLIPToMeOutput: See the class.

    Raises:
        ValueError: Images that do not fit the tower, an invalid
            ``merge_num`` / ``attn_layer`` / ``feature_layer`` /
            ``token_order``.
    """
    if token_order not in TOKEN_ORDERS:
        raise ValueError(f'token_order={token_order!r} is not valid; choose '
                         f'one of {TOKEN_ORDERS}')
    tower = clip_tower_parts(vision_tower)
    image_size, patch, num_layers = clip_geometry(vision_tower)
    if (pixel_values.dim() != 4
            or pixel_values.shape[-2:] != (image_size, image_size)):
        raise ValueError(
            f'pixel_values of shape {tuple(pixel_values.shape)} do not fit '
            f'the vision tower: expected [B, 3, {image_size}, {image_size}] '
            f'(vision_config.image_size={image_size}, patch_size={patch}); '
            'check the image processor crop size.')
    grid = (image_size // patch, image_size // patch)
    num_patches = grid[0] * grid[1]
    depth = clip_feature_depth(num_layers, feature_layer)
    if r_list is None:
        r_list = clip_merge_schedule(num_patches, depth, merge_num)
    else:
        r_list = list(r_list)
        if len(r_list) != depth:
            raise ValueError(f'r_list has {len(r_list)} entries but '
                             f'{depth} vision blocks run')
    counts = check_schedule(r_list, num_patches + 1, 1, setting='merge_num')
    if attn_layer is None:
        attn_layer = depth - 1
    if isinstance(attn_layer, bool) or not isinstance(attn_layer, int) or \
            not 0 <= attn_layer < depth:
        raise ValueError(
            f'attn_layer={attn_layer!r} is out of range: blocks 0..{depth - 1}'
            f' run up to vision_feature_layer={feature_layer}')

    x = tower.embeddings(pixel_values)
    x = tower.pre_layrnorm(x)
    B = x.shape[0]
    size = None
    source = init_source(B, x.shape[1], device=x.device)
    cls_attn = attn_source = None
    for i, layer in enumerate(tower.encoder.layers[:depth]):
        want = need_attn and i == attn_layer
        args = (layer, x, size, source, int(r_list[i]), prop_attn, want)
        if getattr(layer, 'gradient_checkpointing', False) and \
                layer.training and torch.is_grad_enabled():
            out = checkpoint(_block, *args, use_reentrant=False)
        else:
            out = _block(*args)
        x, size, source, attn_i, in_source = out
        if want:
            cls_attn, attn_source = attn_i, in_source
    if x.shape[1] != counts[-1]:  # pragma: no cover - guarded by the core
        raise RuntimeError(f'ToMe produced {x.shape[1]} tokens, expected '
                           f'{counts[-1]}')
    if token_order == 'raster' and x.shape[1] < source.shape[1]:
        x, size, source = reorder_tokens(x, size, source,
                                         source_order(source, x.shape[1]))
    patch_scores = None
    if cls_attn is not None:
        patch_scores = recover(cls_attn, attn_source[:, 1:])
    return CLIPToMeOutput(x, size, source, cls_attn, attn_source,
                          patch_scores, grid, counts)
