"""Functional ToMe forward over a stock mmpretrain ``VisionTransformer``.

Works on any instance of mmpretrain's ``VisionTransformer`` or
``DistilledVisionTransformer`` (and their ToMe subclasses) by calling the
stock sub-modules of every ``TransformerEncoderLayer``: ``ln1``,
``attn.qkv``, ``attn.proj``, ``attn.proj_drop``, ``attn.gamma1``,
``attn.out_drop``, ``ln2`` and ``ffn(x, identity=x)``. Merging happens after
the attention residual and before the MLP, as in ToMe.
"""
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .functional import (ToMeOutput, ViTGeometry, attention, check_image_size,
                         merge_tokens, normalize_attn_layer, pack_output,
                         prepare_schedule, run_blocks, weighted_patch_mean)

__all__ = ['tome_vit_forward', 'mmpretrain_vit_geometry', 'tome_layer_forward']


def _check_backbone(backbone: nn.Module) -> None:
    from mmpretrain.models.backbones import VisionTransformer
    from mmpretrain.models.backbones.vision_transformer import \
        TransformerEncoderLayer
    from mmpretrain.models.utils.attention import MultiheadAttention
    if not isinstance(backbone, VisionTransformer):
        raise ValueError(
            f'backbone of type {type(backbone).__name__} is not an mmpretrain '
            'VisionTransformer')
    for i, layer in enumerate(backbone.layers):
        if type(layer) is not TransformerEncoderLayer or type(
                layer.attn) is not MultiheadAttention:
            raise ValueError(
                f'{type(backbone).__name__}.layers[{i}] is a '
                f'{type(layer).__name__}; the ToMe forward supports only '
                "mmpretrain's TransformerEncoderLayer with MultiheadAttention")
        if layer.attn.v_shortcut:
            raise ValueError(f'layers[{i}].attn uses v_shortcut, which the '
                             'ToMe forward does not support')
        if layer.attn.scaled_dot_product_attention is not \
                torch.nn.functional.scaled_dot_product_attention:
            raise ValueError(
                f'layers[{i}].attn was built with qk_scale; mmpretrain scales '
                'the logits by sqrt(d) on that path and the ToMe forward does '
                'not reproduce it')


def _patch_size(backbone: nn.Module) -> Tuple[int, int]:
    proj = backbone.patch_embed.projection
    stride = proj.stride
    return (int(stride[0]), int(stride[1]))


def mmpretrain_vit_geometry(backbone: nn.Module) -> ViTGeometry:
    """``(patch_size, num_extra_tokens, num_layers)`` of an mmpretrain ViT.

    Raises:
        ValueError: If ``backbone`` is not an mmpretrain VisionTransformer.
    """
    _check_backbone(backbone)
    return ViTGeometry(
        _patch_size(backbone), int(backbone.num_extra_tokens),
        len(backbone.layers))


def tome_layer_forward(layer: nn.Module,
                       x: Tensor,
                       r: int = 0,
                       size: Optional[Tensor] = None,
                       source: Optional[Tensor] = None,
                       num_protected: int = 1,
                       prop_attn: bool = False,
                       need_attn: bool = False):
    """ToMe forward of one mmpretrain ``TransformerEncoderLayer``.

    Args:
        layer (nn.Module): The stock layer.
        x (Tensor): ``[B, T, C]`` tokens.
        r (int): Tokens to merge after the attention. Defaults to 0.
        size (Tensor, optional): ``[B, T, 1]`` sizes (None: all ones).
        source (Tensor, optional): ``[B, N0]`` source map to update.
        num_protected (int): Protected leading tokens. Defaults to 1.
        prop_attn (bool): Proportional attention. Defaults to False.
        need_attn (bool): Return the attention matrix. Defaults to False.

    Returns:
        tuple: ``(x, size, source, attn)``.
    """
    attn_mod = layer.attn
    h = layer.ln1(x)
    B, N, _ = h.shape
    qkv = attn_mod.qkv(h).reshape(B, N, 3, attn_mod.num_heads,
                                  attn_mod.head_dims).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    dropout_p = attn_mod.attn_drop if attn_mod.training else 0.
    out, attn = attention(
        q, k, v, size, prop_attn, need_attn, dropout_p=dropout_p)
    out = out.transpose(1, 2).reshape(B, N, attn_mod.embed_dims)
    out = attn_mod.proj(out)
    x = x + attn_mod.out_drop(attn_mod.gamma1(attn_mod.proj_drop(out)))
    x, size, source = merge_tokens(x, size, source, k, r, num_protected)
    x = layer.ffn(layer.ln2(x), identity=x)
    return x, size, source, attn


def _format_output(backbone: nn.Module, x: Tensor, size: Optional[Tensor],
                   hw: Tuple[int, int], distilled: bool):
    out_type = backbone.out_type
    if out_type == 'raw':
        return x
    if out_type == 'cls_token':
        if distilled:
            return x[:, 0], x[:, 1]
        return x[:, 0]
    n_extra = backbone.num_extra_tokens
    if out_type == 'featmap':
        patches = x[:, n_extra:]
        return patches.reshape(x.size(0), *hw, -1).permute(0, 3, 1, 2)
    if out_type == 'avg_featmap':
        return backbone.ln2(weighted_patch_mean(x, size, n_extra))
    raise ValueError(f'unsupported out_type={out_type!r}')


def tome_vit_forward(backbone: nn.Module,
                     x: Tensor,
                     r_list: Optional[Sequence[int]] = None,
                     prop_attn: bool = False,
                     attn_layer: Optional[int] = None,
                     trace_source: bool = True,
                     stop_at_attn_layer: bool = False) -> ToMeOutput:
    """ToMe forward of an mmpretrain ``VisionTransformer`` (or distilled
    DeiT), reusing its stock sub-modules.

    Args:
        backbone (nn.Module): mmpretrain ``VisionTransformer`` or
            ``DistilledVisionTransformer`` (any subclass with stock layers).
        x (Tensor): Images ``[B, C, H, W]``; ``H`` and ``W`` must be
            divisible by the patch size.
        r_list (Sequence[int], optional): Tokens merged per block. None means
            no merging. Defaults to None.
        prop_attn (bool): Proportional attention (``log(size)`` added to the
            logits). Defaults to False.
        attn_layer (int, optional): 0-based block whose attention (on the
            tokens entering it) and entering source map are returned.
            Defaults to None.
        trace_source (bool): Track the final source map. Defaults to True.
        stop_at_attn_layer (bool): Stop right after block ``attn_layer``
            (for callers that only need its attention, e.g. a mask pass):
            ``outs`` is then empty and ``tokens`` / ``size`` / ``source``
            describe the state after that block. Defaults to False.

    Returns:
        ToMeOutput: ``outs`` is what ``backbone.forward`` returns for its
        ``out_type`` / ``out_indices`` (``avg_featmap`` size-weighted).

    Raises:
        ValueError: For a non-ViT backbone, a bad image size, ``r_list`` or
            ``attn_layer``, or ``out_type='featmap'`` while merging.
    """
    from mmpretrain.models.backbones import DistilledVisionTransformer
    from mmpretrain.models.utils import resize_pos_embed
    _check_backbone(backbone)
    distilled = isinstance(backbone, DistilledVisionTransformer)
    num_layers = len(backbone.layers)
    check_image_size(x, _patch_size(backbone))
    attn_layer = normalize_attn_layer(attn_layer, num_layers,
                                      stop_at_attn_layer)

    B = x.shape[0]
    x, patch_resolution = backbone.patch_embed(x)
    n_extra = int(backbone.num_extra_tokens)
    num_tokens = x.shape[1] + n_extra
    counts = prepare_schedule(r_list, num_layers, num_tokens, n_extra)
    # a pass that stops at attn_layer (MergeMix's mask pass) builds no
    # outputs, so any out_type works there
    if (backbone.out_type == 'featmap' and counts[-1] < num_tokens
            and not stop_at_attn_layer):
        raise ValueError("out_type='featmap' cannot be used while merging "
                         'tokens; use cls_token, avg_featmap or raw')

    if distilled:
        x = torch.cat((backbone.cls_token.expand(
            B, -1, -1), backbone.dist_token.expand(B, -1, -1), x),
                      dim=1)
    elif backbone.cls_token is not None:
        x = torch.cat((backbone.cls_token.expand(B, -1, -1), x), dim=1)
    x = x + resize_pos_embed(
        backbone.pos_embed,
        backbone.patch_resolution,
        patch_resolution,
        mode=backbone.interpolate_mode,
        num_extra_tokens=n_extra)
    x = backbone.drop_after_pos(x)
    if not distilled:  # the stock distilled forward skips pre_norm
        x = backbone.pre_norm(x)

    outs = []

    def after_block(i: int, x: Tensor, size: Optional[Tensor]) -> Tensor:
        if i == num_layers - 1 and backbone.final_norm:
            x = backbone.ln1(x)
        if i in backbone.out_indices and not stop_at_attn_layer:
            outs.append(
                _format_output(backbone, x, size, patch_resolution, distilled))
        return x

    run = run_blocks(
        backbone.layers,
        tome_layer_forward,
        x,
        counts,
        num_protected=n_extra,
        prop_attn=prop_attn,
        attn_layer=attn_layer,
        trace_source=trace_source,
        stop_at_attn_layer=stop_at_attn_layer,
        after_block=after_block)
    return pack_output(run, tuple(outs), n_extra, patch_resolution, counts,
                       backbone.cls_token is not None)
