"""Functional ToMe forward over a stock timm ``VisionTransformer``.

Uses the stock sub-modules of every timm ``Block`` (``norm1``, ``attn.qkv``,
``attn.q_norm`` / ``attn.k_norm``, ``attn.norm``, ``attn.proj``,
``attn.proj_drop``, ``ls1``, ``drop_path1``, ``norm2``, ``mlp``, ``ls2``,
``drop_path2``); no class swapping. Prefix tokens (CLS and register tokens,
``num_prefix_tokens``) are protected. timm is imported lazily.
"""
from typing import Optional, Sequence, Tuple

from torch import Tensor, nn

from .functional import (ToMeOutput, ViTGeometry, attention, check_image_size,
                         merge_tokens, normalize_attn_layer, pack_output,
                         prepare_schedule, run_blocks, size_log_bias,
                         weighted_patch_mean)

__all__ = [
    'tome_timm_forward', 'timm_vit_geometry', 'is_timm_vit',
    'tome_timm_block_forward', 'timm_pool'
]


def is_timm_vit(model: nn.Module) -> bool:
    """Whether ``model`` is a timm ``VisionTransformer`` (without importing
    timm when it has not been imported yet)."""
    import sys
    mod = sys.modules.get('timm.models.vision_transformer')
    if mod is None:
        return False
    return isinstance(model, mod.VisionTransformer)


def _check_model(model: nn.Module) -> None:
    if not is_timm_vit(model):
        raise ValueError(f'model of type {type(model).__name__} is not a '
                         'timm VisionTransformer')
    from timm.layers import Attention
    from timm.models.vision_transformer import Block
    for i, blk in enumerate(model.blocks):
        if type(blk).forward is not Block.forward or not isinstance(
                blk, Block):
            raise ValueError(
                f'blocks[{i}] is a {type(blk).__name__}; the ToMe forward '
                "supports timm's standard pre-norm Block only")
        if type(blk.attn).forward is not Attention.forward:
            raise ValueError(
                f'blocks[{i}].attn is a {type(blk.attn).__name__}; only '
                "timm's standard Attention is supported")
    if not isinstance(model.patch_drop, nn.Identity):
        raise ValueError('patch_drop_rate > 0 is not supported by the ToMe '
                         'forward (dropped patches break source tracking)')


def timm_vit_geometry(model: nn.Module) -> ViTGeometry:
    """``(patch_size, num_prefix_tokens, num_blocks)`` of a timm ViT.

    ``patch_size`` is the pixel size of one token: the patch size, times
    the stride of the CNN stem for timm's hybrid ViTs (``HybridEmbed``,
    e.g. ``vit_tiny_r_s16_p8_224``: 8 px patches on a stride-4 feature map,
    32 px per token).

    Raises:
        ValueError: If ``model`` is not a timm VisionTransformer.
    """
    _check_model(model)
    embed = model.patch_embed
    ph, pw = (int(v) for v in embed.patch_size)
    ratio = getattr(embed, 'feature_ratio', None)  # HybridEmbed's stem
    if ratio is not None:
        ph, pw = ph * int(ratio[0]), pw * int(ratio[1])
    return ViTGeometry((ph, pw), int(model.num_prefix_tokens),
                       len(model.blocks))


def tome_timm_block_forward(blk: nn.Module,
                            x: Tensor,
                            r: int = 0,
                            size: Optional[Tensor] = None,
                            source: Optional[Tensor] = None,
                            num_protected: int = 1,
                            prop_attn: bool = False,
                            need_attn: bool = False):
    """ToMe forward of one timm ``Block``.

    Returns:
        tuple: ``(x, size, source, attn)``.
    """
    attn_mod = blk.attn
    h = blk.norm1(x)
    B, N, _ = h.shape
    gate = attn_mod.gate(h).sigmoid() if getattr(attn_mod, 'gate',
                                                 None) is not None else None
    qkv = attn_mod.qkv(h).reshape(B, N, 3, attn_mod.num_heads,
                                  attn_mod.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn_mod.q_norm(q), attn_mod.k_norm(k)
    dropout_p = attn_mod.attn_drop.p if attn_mod.training else 0.
    out, attn = attention(
        q,
        k,
        v,
        size,
        prop_attn,
        need_attn,
        dropout_p=dropout_p,
        scale=attn_mod.scale)
    out = out.transpose(1, 2).reshape(B, N,
                                      attn_mod.num_heads * attn_mod.head_dim)
    out = attn_mod.norm(out)
    if gate is not None:
        out = out * gate
    out = attn_mod.proj_drop(attn_mod.proj(out))
    x = x + blk.drop_path1(blk.ls1(out))
    x, size, source = merge_tokens(x, size, source, k, r, num_protected)
    x = x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
    return x, size, source, attn


def _merged_attn_pool(pool: nn.Module, x: Tensor, size: Tensor) -> Tensor:
    """timm's attention pooling heads on merged tokens, with proportional
    attention: ``log(size)`` is added to the logits of every key, so a token
    that holds ``s`` identical originals weighs as those ``s`` tokens would.
    """
    from timm.layers import AttentionPoolLatent
    try:  # newer timm releases only (not 1.0.20)
        from timm.layers.attention_pool import AttentionPoolPrr
    except ImportError:
        AttentionPoolPrr = None
    if type(pool).forward is AttentionPoolLatent.forward:
        if pool.pos_embed is not None:
            raise ValueError(
                "global_pool='map' with a position embedding in the pooling "
                'head is not supported while merging tokens')
        return pool(x, attn_mask=size_log_bias(size, x.dtype))
    if AttentionPoolPrr is not None and \
            type(pool).forward is AttentionPoolPrr.forward:
        B, N, C = x.shape
        h = pool.pre_norm(x)
        heads = h.reshape(B, N, pool.num_heads, pool.head_dim).transpose(1, 2)
        out, _ = attention(
            heads, heads, heads, size, prop_attn=True, scale=pool.scale)
        out = pool.post_norm(out.transpose(1, 2).reshape(B, N, C))
        if pool.pool == 'token':
            return out[:, 0]
        return weighted_patch_mean(out, size, 0)
    raise ValueError(f'the attention pool {type(pool).__name__} is not '
                     'supported while merging tokens')


def timm_pool(model: nn.Module, x: Tensor, size: Optional[Tensor],
              merged: bool) -> Tensor:
    """Pooling of timm's ``forward_head`` (pre-logits).

    Without merging this is the model's own pooling. While merging every
    ``global_pool`` treats a token of size ``s`` as ``s`` copies of itself:
    ``'avg'`` is size-weighted, ``'max'`` needs no weights, ``'avgmax'``
    combines the two, and the attention pools (``'map'``, ``'prr'``) add
    ``log(size)`` to their attention logits. Subclasses with their own
    ``forward_head`` (timm's distilled DeiT averages the CLS and
    distillation tokens) are delegated to; they only read the protected
    prefix tokens.

    Raises:
        ValueError: For a pooling that cannot be applied to merged tokens
            (an unknown attention pool or one with a position embedding).
    """
    from timm.models.vision_transformer import VisionTransformer
    if type(model).forward_head is not VisionTransformer.forward_head:
        return model.forward_head(x, pre_logits=True)
    pool = model.global_pool
    if not merged or not pool or pool == 'token':
        x = model.pool(x)
    else:
        n = 0 if model.pool_include_prefix else model.num_prefix_tokens
        x, size = x[:, n:], size[:, n:]
        if getattr(model, 'attn_pool', None) is not None:
            x = _merged_attn_pool(model.attn_pool, x, size)
        elif pool == 'avg':
            x = weighted_patch_mean(x, size, 0)
        elif pool == 'max':
            x = x.amax(dim=1)
        elif pool == 'avgmax':
            x = 0.5 * (x.amax(dim=1) + weighted_patch_mean(x, size, 0))
        else:
            raise ValueError(f"global_pool='{pool}' is not supported while "
                             'merging tokens')
    x = model.fc_norm(x)
    return model.head_drop(x)


def tome_timm_forward(model: nn.Module,
                      x: Tensor,
                      r_list: Optional[Sequence[int]] = None,
                      prop_attn: bool = False,
                      attn_layer: Optional[int] = None,
                      trace_source: bool = True,
                      stop_at_attn_layer: bool = False) -> ToMeOutput:
    """ToMe forward of a timm ``VisionTransformer``.

    Args:
        model (nn.Module): timm ``VisionTransformer`` with standard blocks.
        x (Tensor): Images ``[B, C, H, W]``.
        r_list (Sequence[int], optional): Tokens merged per block. None means
            no merging. Defaults to None.
        prop_attn (bool): Proportional attention. Defaults to False.
        attn_layer (int, optional): Block whose attention and entering source
            map are returned. Defaults to None.
        trace_source (bool): Track the final source map. Defaults to True.
        stop_at_attn_layer (bool): Stop right after block ``attn_layer``:
            ``outs`` is then empty and ``tokens`` / ``size`` / ``source``
            describe the (un-normalised) state after that block. Defaults
            to False.

    With ``model.set_grad_checkpointing()`` the blocks (merging included)
    are recomputed in the backward pass, as in timm's own forward.

    Returns:
        ToMeOutput: ``outs`` is a 1-tuple with the pooled pre-logits features
        (``model.head(outs[0])`` gives the logits; for timm's distilled DeiT,
        whose pre-logits average the class and distillation tokens, use
        ``model.forward_head(out.tokens)``, which averages its two heads);
        ``tokens`` are the final normalised tokens.

    Raises:
        ValueError: Unsupported model or pooling, bad image size,
            ``r_list`` or ``attn_layer``.
    """
    geometry = timm_vit_geometry(model)  # also validates the model
    check_image_size(x, geometry.patch_size)
    num_layers = geometry.num_layers
    attn_layer = normalize_attn_layer(attn_layer, num_layers,
                                      stop_at_attn_layer)
    ph, pw = geometry.patch_size
    hw: Tuple[int, int] = (x.shape[-2] // ph, x.shape[-1] // pw)
    x = model.patch_embed(x)
    x = model._pos_embed(x)
    x = model.patch_drop(x)
    x = model.norm_pre(x)
    n_extra = geometry.num_extra_tokens
    num_tokens = x.shape[1]
    counts = prepare_schedule(r_list, num_layers, num_tokens, n_extra)
    run = run_blocks(
        model.blocks,
        tome_timm_block_forward,
        x,
        counts,
        num_protected=n_extra,
        prop_attn=prop_attn,
        attn_layer=attn_layer,
        trace_source=trace_source,
        stop_at_attn_layer=stop_at_attn_layer,
        checkpoint_blocks=bool(getattr(model, 'grad_checkpointing', False)))
    outs = ()
    if not stop_at_attn_layer:
        run = run._replace(tokens=model.norm(run.tokens))
        outs = (timm_pool(model, run.tokens, run.size,
                          counts[-1] < num_tokens), )
    return pack_output(run, outs, n_extra, hw, counts,
                       bool(model.has_class_token))
