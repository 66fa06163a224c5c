"""Shared pieces of the functional ToMe forwards and the backbone dispatch.

The model-specific forwards live in :mod:`.mmpretrain_vit` (mmpretrain's
``VisionTransformer`` / ``DistilledVisionTransformer``) and :mod:`.timm_vit`
(timm's ``VisionTransformer``). Both reuse the stock sub-modules of the model
they are given; nothing is patched or swapped.

Entry points for callers that do not care which ViT they hold:

* :func:`forward_with_attention` runs the ToMe forward of any supported
  backbone and returns a :class:`ToMeOutput`.
* :func:`vit_geometry` returns ``(patch_size, num_extra_tokens, num_layers)``.
"""
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .merge import (Matching, bipartite_soft_matching, head_mean_metric,
                    init_source, merge_source, merge_wavg)
from .schedule import check_schedule

__all__ = [
    'ToMeOutput', 'ViTGeometry', 'forward_with_attention', 'vit_geometry',
    'attention', 'merge_tokens', 'prepare_schedule', 'normalize_attn_layer',
    'check_image_size', 'check_img_size_setting', 'weighted_patch_mean',
    'BlockPass', 'run_blocks',
    'pack_output', 'check_cls_token', 'size_log_bias', 'vit_img_size'
]


class ToMeOutput(NamedTuple):
    """Result of a functional ToMe forward.

    Attributes:
        outs (tuple): What the backbone's ``forward`` returns for its
            ``out_type`` / ``out_indices`` (mmpretrain), with ``avg_featmap``
            size-weighted. For timm models a 1-tuple with the pooled
            pre-logits features.
        attn (Tensor | None): ``[B, H, T_l, T_l]`` post-softmax attention of
            block ``attn_layer`` computed on the tokens entering it (before
            attention dropout), detached; ``None`` if not requested.
        source_in (Tensor | None): ``LongTensor[B, N0]``, original token ->
            index among the tokens entering block ``attn_layer``.
        source (Tensor | None): ``LongTensor[B, N0]`` final source map
            (``None`` if source tracking was off).
        size (Tensor): ``[B, T_final, 1]`` final token sizes.
        num_extra_tokens (int): Leading protected tokens (CLS, distillation,
            register tokens).
        patch_resolution (tuple[int, int]): Patch grid ``(h, w)``.
        tokens (Tensor): ``[B, T_final, C]`` final tokens (after the final
            norm when the model has one).
        token_counts (list[int]): Tokens entering each block, then the final
            count.
        has_cls_token (bool): Whether token 0 is a class token (False for
            timm ``class_token=False`` and mmpretrain
            ``with_cls_token=False`` models, whose leading tokens, if any,
            are register tokens). Defaults to True.
    """
    outs: tuple
    attn: Optional[Tensor]
    source_in: Optional[Tensor]
    source: Optional[Tensor]
    size: Tensor
    num_extra_tokens: int
    patch_resolution: Tuple[int, int]
    tokens: Tensor
    token_counts: List[int]
    has_cls_token: bool = True


class ViTGeometry(NamedTuple):
    """Static geometry of a ViT backbone."""
    patch_size: Tuple[int, int]
    num_extra_tokens: int
    num_layers: int


def size_log_bias(size: Tensor, dtype: torch.dtype) -> Tensor:
    """Proportional attention bias: ``log(size)`` of every key token.

    Args:
        size (Tensor): ``[B, T, 1]`` token sizes.
        dtype (torch.dtype): dtype of the attention logits.

    Returns:
        Tensor: ``[B, 1, 1, T]`` additive bias (broadcasts over heads and
        queries).
    """
    return size.float().log().to(dtype).transpose(1, 2).unsqueeze(1)


def attention(
        q: Tensor,
        k: Tensor,
        v: Tensor,
        size: Optional[Tensor] = None,
        prop_attn: bool = False,
        need_attn: bool = False,
        dropout_p: float = 0.,
        scale: Optional[float] = None) -> Tuple[Tensor, Optional[Tensor]]:
    """Multi-head attention with optional proportional attention.

    The fused ``F.scaled_dot_product_attention`` is used unless the attention
    matrix is requested. Proportional attention adds ``log(size_j)`` to the
    logits of key ``j`` (an additive mask in the fused path).

    Args:
        q (Tensor): ``[B, H, T, d]``.
        k (Tensor): ``[B, H, T, d]``.
        v (Tensor): ``[B, H, T, d]``.
        size (Tensor, optional): ``[B, T, 1]`` token sizes. Defaults to None.
        prop_attn (bool): Use proportional attention. Defaults to False.
        need_attn (bool): Return the post-softmax attention (before dropout,
            detached). Defaults to False.
        dropout_p (float): Attention dropout. Defaults to 0.
        scale (float, optional): Logit scale; ``d ** -0.5`` if None.

    Returns:
        tuple[Tensor, Tensor | None]: ``[B, H, T, d]`` output and the
        attention matrix or None.
    """
    mask = None
    if prop_attn and size is not None:
        mask = size_log_bias(size, q.dtype)
    if not need_attn:
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)
        return out, None
    if scale is None:
        scale = q.shape[-1]**-0.5
    logits = (q * scale) @ k.transpose(-2, -1)
    if mask is not None:
        logits = logits + mask
    attn = logits.softmax(dim=-1)
    weights = F.dropout(attn, dropout_p) if dropout_p > 0 else attn
    return weights @ v, attn.detach()


def merge_tokens(
        x: Tensor, size: Optional[Tensor], source: Optional[Tensor],
        keys: Tensor, r: int, num_protected: int
) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """One ToMe merging step with the per-sample head-mean key metric.

    Args:
        x (Tensor): ``[B, T, C]`` tokens (after the attention residual).
        size (Tensor, optional): ``[B, T, 1]`` sizes or None (all ones).
        source (Tensor, optional): ``[B, N0]`` source map or None.
        keys (Tensor): ``[B, H, T, d]`` keys of this block's attention.
        r (int): Tokens to merge.
        num_protected (int): Protected leading tokens.

    Returns:
        tuple: Merged ``x``, ``size`` and ``source``.
    """
    if r == 0:
        return x, size, source
    matching: Matching = bipartite_soft_matching(
        head_mean_metric(keys), r, num_protected)
    x, size = merge_wavg(x, size, matching)
    if source is not None:
        source = merge_source(source, matching)
    return x, size, source


def prepare_schedule(r_list: Optional[Sequence[int]], num_layers: int,
                     num_tokens: int, num_protected: int) -> List[int]:
    """Validate ``r_list`` against the model and return token counts.

    Raises:
        ValueError: Wrong length, negative or too large entries.
    """
    if r_list is None:
        r_list = [0] * num_layers
    r_list = list(r_list)
    if len(r_list) != num_layers:
        raise ValueError(f'r_list has {len(r_list)} entries but the backbone '
                         f'has {num_layers} blocks')
    return check_schedule(r_list, num_tokens, num_protected, setting='r_list')


class BlockPass(NamedTuple):
    """State after :func:`run_blocks`.

    Attributes:
        tokens (Tensor): ``[B, T, C]`` tokens after the last block run.
        size (Tensor | None): ``[B, T, 1]`` sizes; None while nothing was
            merged.
        source (Tensor | None): Final source map (None unless traced).
        attn (Tensor | None): Attention of block ``attn_layer``.
        source_in (Tensor | None): Source map entering ``attn_layer``.
    """
    tokens: Tensor
    size: Optional[Tensor]
    source: Optional[Tensor]
    attn: Optional[Tensor]
    source_in: Optional[Tensor]


def run_blocks(blocks: Sequence[nn.Module],
               block_forward: Callable,
               x: Tensor,
               counts: Sequence[int],
               num_protected: int,
               prop_attn: bool = False,
               attn_layer: Optional[int] = None,
               trace_source: bool = True,
               stop_at_attn_layer: bool = False,
               after_block: Optional[Callable[[int, Tensor, Optional[Tensor]],
                                              Tensor]] = None,
               checkpoint_blocks: bool = False) -> BlockPass:
    """Run the blocks of a ViT with merging, the loop both forwards share.

    Args:
        blocks (Sequence[nn.Module]): The stock blocks, in order.
        block_forward (Callable): ToMe forward of one block,
            ``(block, x, r, size, source, num_protected=, prop_attn=,
            need_attn=) -> (x, size, source, attn)``.
        x (Tensor): ``[B, T, C]`` tokens entering the first block, protected
            tokens first.
        counts (Sequence[int]): Tokens entering each block, then the final
            count (from :func:`prepare_schedule`).
        num_protected (int): Protected leading tokens.
        prop_attn (bool): Proportional attention. Defaults to False.
        attn_layer (int, optional): 0-based block (already normalised by
            :func:`normalize_attn_layer`) whose attention and entering source
            map are kept. Defaults to None.
        trace_source (bool): Keep the final source map. Defaults to True.
        stop_at_attn_layer (bool): Stop right after block ``attn_layer``.
            Defaults to False.
        after_block (Callable, optional): ``(index, x, size) -> x`` called
            after every block except the one a stopping pass ends at (e.g.
            a final norm and per-layer outputs). Defaults to None.
        checkpoint_blocks (bool): Gradient checkpointing: while gradients
            are enabled, every block (merging step included) is run under
            ``torch.utils.checkpoint`` and recomputed in the backward pass
            (timm's ``set_grad_checkpointing``). Defaults to False.

    Returns:
        BlockPass: Tokens, sizes, source maps and attention.
    """
    track = trace_source or attn_layer is not None
    source = init_source(x.shape[0], x.shape[1], x.device) if track else None
    size = attn = source_in = None
    for i, block in enumerate(blocks):
        need = i == attn_layer
        if need:
            source_in = source
        args = (block, x, counts[i] - counts[i + 1], size, source)
        kwargs = dict(
            num_protected=num_protected, prop_attn=prop_attn, need_attn=need)
        if checkpoint_blocks and torch.is_grad_enabled():
            x, size, source, a = checkpoint(
                block_forward, *args, use_reentrant=False, **kwargs)
        else:
            x, size, source, a = block_forward(*args, **kwargs)
        if need:
            attn = a
            if stop_at_attn_layer:
                break
        if after_block is not None:
            x = after_block(i, x, size)
    return BlockPass(x, size, source if trace_source else None, attn,
                     source_in)


def pack_output(run: BlockPass,
                outs: tuple,
                num_extra_tokens: int,
                patch_resolution: Tuple[int, int],
                token_counts: List[int],
                has_cls_token: bool = True) -> ToMeOutput:
    """Build the :class:`ToMeOutput` of a forward from its :class:`BlockPass`
    (all-ones sizes when nothing was merged)."""
    size = run.size
    if size is None:
        x = run.tokens
        size = torch.ones(
            x.shape[0], x.shape[1], 1, dtype=torch.float32, device=x.device)
    return ToMeOutput(
        outs=outs,
        attn=run.attn,
        source_in=run.source_in,
        source=run.source,
        size=size,
        num_extra_tokens=num_extra_tokens,
        patch_resolution=tuple(patch_resolution),
        tokens=run.tokens,
        token_counts=token_counts,
        has_cls_token=has_cls_token)


def check_cls_token(out: ToMeOutput, user: str) -> None:
    """Raise ValueError unless the forward ``out`` came from has a class
    token at index 0 (methods that read its attention need one).

    Args:
        out (ToMeOutput): The forward's result.
        user (str): What reads the class token, for the message.
    """
    if not out.has_cls_token:
        raise ValueError(
            f"{user} reads the class token's attention, but the backbone "
            'has no class token (timm class_token=False / mmpretrain '
            'with_cls_token=False)')


def normalize_attn_layer(attn_layer: Optional[int],
                         num_layers: int,
                         stop_at_attn_layer: bool = False) -> Optional[int]:
    """Check ``attn_layer`` (0-based, negative counts from the end); a
    forward that stops at it (``stop_at_attn_layer``) needs one."""
    if attn_layer is None:
        if stop_at_attn_layer:
            raise ValueError('stop_at_attn_layer=True needs an attn_layer')
        return None
    if isinstance(attn_layer, bool) or not isinstance(attn_layer, int):
        raise ValueError(f'attn_layer={attn_layer!r} must be an int or None')
    if not -num_layers <= attn_layer < num_layers:
        raise ValueError(f'attn_layer={attn_layer} is out of range for a '
                         f'{num_layers}-block backbone')
    return attn_layer % num_layers


def check_image_size(x: Tensor, patch_size: Tuple[int, int]) -> None:
    """Raise ValueError unless ``x`` is ``[B, C, H, W]`` with ``H``, ``W``
    divisible by the patch size."""
    if x.dim() != 4:
        raise ValueError(
            f'expected images [B, C, H, W], got shape {tuple(x.shape)}')
    h, w = x.shape[-2:]
    if h % patch_size[0] or w % patch_size[1]:
        raise ValueError(
            f'image size {h}x{w} is not divisible by the patch size '
            f'{patch_size[0]}x{patch_size[1]}')


def check_img_size_setting(img_size: Tuple[int, int],
                           patch_size: Tuple[int, int]) -> None:
    """Raise ValueError unless the ``img_size`` setting of a ToMe backbone
    is a whole number of patches.

    Stock ViTs pad (mmpretrain's adaptive padding) or crop (timm) an image
    that is not; the merged forwards and the MergeMix mask, which maps every
    patch back to its pixels, need whole patches.
    """
    h, w = img_size
    if h % patch_size[0] or w % patch_size[1]:
        raise ValueError(
            f'img_size={h}x{w} is not divisible by patch_size='
            f'{patch_size[0]}x{patch_size[1]}; a ToMe backbone needs whole '
            'patches (choose an img_size that is a multiple of patch_size)')


def weighted_patch_mean(x: Tensor, size: Optional[Tensor],
                        num_extra_tokens: int) -> Tensor:
    """Size-weighted mean of the patch tokens (plain mean if ``size`` is
    None)."""
    patches = x[:, num_extra_tokens:]
    if size is None:
        return patches.mean(dim=1)
    s = size[:, num_extra_tokens:].float()
    weights = (s / s.sum(dim=1, keepdim=True)).to(x.dtype)
    return (patches * weights).sum(dim=1)


def _backbone_kind(backbone: nn.Module) -> str:
    from mmpretrain.models.backbones import VisionTransformer
    if hasattr(backbone, 'tome_forward') and hasattr(backbone,
                                                     'tome_geometry'):
        return 'tome'
    if isinstance(backbone, VisionTransformer):
        return 'mmpretrain'
    from .timm_vit import is_timm_vit
    if is_timm_vit(backbone):
        return 'timm'
    if is_timm_vit(getattr(backbone, 'timm_model', None)):
        return 'timm_backbone'  # mmpretrain's TIMMBackbone
    raise ValueError(
        f'backbone of type {type(backbone).__name__} is not a supported '
        'ViT: expected mmpretrain VisionTransformer / '
        'DistilledVisionTransformer, ToMeVisionTransformer, ToMeTimmViT, a '
        'timm VisionTransformer or a TIMMBackbone wrapping one')


def vit_geometry(backbone: nn.Module) -> ViTGeometry:
    """Patch size, number of extra tokens and number of blocks of a ViT.

    Args:
        backbone (nn.Module): A supported ViT (see
            :func:`forward_with_attention`).

    Returns:
        ViTGeometry: ``(patch_size (h, w), num_extra_tokens, num_layers)``.

    Raises:
        ValueError: For a non-ViT backbone (the message names its type).
    """
    kind = _backbone_kind(backbone)
    if kind == 'tome':
        return backbone.tome_geometry()
    if kind == 'mmpretrain':
        from .mmpretrain_vit import mmpretrain_vit_geometry
        return mmpretrain_vit_geometry(backbone)
    from .timm_vit import timm_vit_geometry
    if kind == 'timm_backbone':
        backbone = backbone.timm_model
    return timm_vit_geometry(backbone)


def vit_img_size(backbone: nn.Module) -> Tuple[int, int]:
    """Input size ``(H, W)`` a ViT was configured for: the size its
    position embedding was built for (what a config's ``img_size`` sets).

    Args:
        backbone (nn.Module): A supported ViT (see
            :func:`forward_with_attention`), including ``ToMeTimmViT``.

    Returns:
        tuple[int, int]: ``(H, W)`` in pixels.

    Raises:
        ValueError: For a non-ViT backbone.
    """
    from .timm_vit import is_timm_vit
    kind = _backbone_kind(backbone)
    inner = getattr(backbone, 'timm_model' if kind == 'timm_backbone' else
                    'model', None)
    timm_model = backbone if kind == 'timm' else inner
    if is_timm_vit(timm_model):
        h, w = timm_model.patch_embed.img_size
        return int(h), int(w)
    (ph, pw), _, _ = vit_geometry(backbone)
    gh, gw = backbone.patch_resolution
    return int(gh * ph), int(gw * pw)


def forward_with_attention(backbone: nn.Module,
                           x: Tensor,
                           attn_layer: Optional[int] = None,
                           r_list: Optional[Sequence[int]] = None,
                           prop_attn: Optional[bool] = None,
                           trace_source: bool = True,
                           stop_at_attn_layer: bool = False) -> ToMeOutput:
    """ToMe forward of any supported ViT, optionally capturing one block's
    attention and the source map of the tokens entering it.

    Args:
        backbone (nn.Module): mmpretrain ``VisionTransformer`` /
            ``DistilledVisionTransformer``, ``ToMeVisionTransformer``,
            ``ToMeTimmViT``, a timm ``VisionTransformer`` or mmpretrain's
            ``TIMMBackbone`` wrapping one.
        x (Tensor): Images ``[B, C, H, W]``.
        attn_layer (int, optional): 0-based block whose attention is
            returned. Defaults to None.
        r_list (Sequence[int], optional): ``r`` per block. None uses the
            ToMe backbone's current schedule (train/test, ``merging``
            switch), or no merging for stock models.
        prop_attn (bool, optional): Proportional attention. None uses the
            ToMe backbone's setting (False for stock models).
        trace_source (bool): Track the final source map. Defaults to True.
        stop_at_attn_layer (bool): Skip the blocks after ``attn_layer``
            (the attention and entering source map are all a mask pass
            needs); ``outs`` is then empty. Defaults to False.

    Returns:
        ToMeOutput: See :class:`ToMeOutput`.

    Raises:
        ValueError: For an unsupported backbone, a bad ``attn_layer``,
            ``r_list`` or image size.
    """
    kind = _backbone_kind(backbone)
    if kind == 'tome':
        return backbone.tome_forward(
            x,
            r_list=r_list,
            attn_layer=attn_layer,
            prop_attn=prop_attn,
            trace_source=trace_source,
            stop_at_attn_layer=stop_at_attn_layer)
    if kind == 'mmpretrain':
        from .mmpretrain_vit import tome_vit_forward as forward
    else:
        from .timm_vit import tome_timm_forward as forward
        if kind == 'timm_backbone':
            backbone = backbone.timm_model
    return forward(
        backbone,
        x,
        r_list,
        prop_attn=bool(prop_attn),
        attn_layer=attn_layer,
        trace_source=trace_source,
        stop_at_attn_layer=stop_at_attn_layer)
