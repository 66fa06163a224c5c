"""A textbook ToMe forward, as a yardstick for the throughput benchmark.

The question the ToMe throughput figures leave open is where the baseline
comes from. This module writes ToMe the way the paper describes it, with
the straightforward tensor operations one would use for that description:

* attention computed explicitly, ``softmax(q k^T / sqrt(d) + log(size))``
  (proportional attention), so the same code serves merged and un-merged
  blocks;
* bipartite matching on the head-averaged keys (cosine similarity between
  the alternating halves, best partner per token, the ``r`` best edges
  merged, the class token excluded);
* size-weighted merging by gathering and ``scatter_reduce``-summing
  ``size * x`` and ``size`` over channel-expanded indices, then dividing.

It is written for this benchmark from the paper's description (no code of
the reference implementation is used) and reuses the stock sub-modules of
an mmpretrain ``VisionTransformer`` with a class token and ``out_type``
``'cls_token'``. With ``prop_attn=False`` it computes the same function as
:func:`mergemix_mm.models.tome.tome_vit_forward`; with ``r_list`` all zero,
the same as the stock forward.
"""
import math
from typing import Callable, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

__all__ = ['textbook_merge', 'textbook_forward', 'textbook_forward_fn']


def textbook_merge(x: Tensor, size: Optional[Tensor], keys: Tensor,
                   r: int) -> Tuple[Tensor, Tensor]:
    """One ToMe merging step in the paper's formulation (class token at 0).

    Args:
        x (Tensor): ``[B, T, C]`` tokens.
        size (Tensor, optional): ``[B, T, 1]`` token sizes (None: ones).
        keys (Tensor): ``[B, H, T, d]`` keys of the block's attention.
        r (int): Tokens to merge away.

    Returns:
        tuple[Tensor, Tensor]: ``[B, T - r, C]`` tokens and their sizes.
    """
    feats = keys.mean(dim=1)
    feats = feats / feats.norm(dim=-1, keepdim=True)
    even, odd = feats[:, ::2], feats[:, 1::2]
    similarity = even @ odd.transpose(1, 2)
    similarity[:, 0, :] = -math.inf  # the class token stays
    best_sim, partner = similarity.max(dim=-1)
    ranking = best_sim.argsort(dim=-1, descending=True).unsqueeze(-1)
    merged_away = ranking[:, :r]
    staying = ranking[:, r:].sort(dim=1).values
    receivers = partner.unsqueeze(-1).gather(1, merged_away)

    def pool(t: Tensor) -> Tensor:
        t_even, t_odd = t[:, ::2], t[:, 1::2]
        n, n_even, c = t_even.shape
        kept = t_even.gather(1, staying.expand(n, n_even - r, c))
        moved = t_even.gather(1, merged_away.expand(n, r, c))
        t_odd = t_odd.scatter_reduce(
            1, receivers.expand(n, r, c), moved, reduce='sum')
        return torch.cat([kept, t_odd], dim=1)

    if size is None:
        size = x.new_ones(x.shape[0], x.shape[1], 1)
    total = pool(x * size)
    size = pool(size)
    return total / size, size


def textbook_forward(backbone: nn.Module,
                     x: Tensor,
                     r_list: Sequence[int],
                     prop_attn: bool = True) -> Tensor:
    """Textbook ToMe forward of an mmpretrain ``VisionTransformer``.

    Args:
        backbone (nn.Module): mmpretrain ViT with a class token, in eval
            mode.
        x (Tensor): ``[B, 3, H, W]`` images.
        r_list (Sequence[int]): Tokens merged after each block's attention.
        prop_attn (bool): Add ``log(size)`` to the attention logits.
            Defaults to True.

    Returns:
        Tensor: ``[B, C]`` class-token features (after the final norm).
    """
    from mmpretrain.models.utils import resize_pos_embed
    if backbone.cls_token is None or backbone.num_extra_tokens != 1:
        raise ValueError('textbook_forward needs a ViT with exactly one '
                         'class token')
    B = x.shape[0]
    x, hw = backbone.patch_embed(x)
    x = torch.cat((backbone.cls_token.expand(B, -1, -1), x), dim=1)
    x = x + resize_pos_embed(
        backbone.pos_embed,
        backbone.patch_resolution,
        hw,
        mode=backbone.interpolate_mode,
        num_extra_tokens=1)
    x = backbone.pre_norm(backbone.drop_after_pos(x))
    size = None
    for layer, r in zip(backbone.layers, r_list):
        attn = layer.attn
        h = layer.ln1(x)
        n = h.shape[1]
        qkv = attn.qkv(h).reshape(B, n, 3, attn.num_heads,
                                  attn.head_dims).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        logits = (q * attn.head_dims**-0.5) @ k.transpose(-2, -1)
        if prop_attn and size is not None:
            logits = logits + size.log().transpose(1, 2).unsqueeze(1)
        out = (logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(
            B, n, attn.embed_dims)
        x = x + attn.out_drop(attn.gamma1(attn.proj_drop(attn.proj(out))))
        if r:
            x, size = textbook_merge(x, size, k, r)
        x = layer.ffn(layer.ln2(x), identity=x)
    if backbone.final_norm:
        x = backbone.ln1(x)
    return x[:, 0]


def textbook_forward_fn(backbone: nn.Module,
                        r_list: Sequence[int]) -> Callable[[Tensor], Tensor]:
    """``x -> textbook_forward(backbone, x, r_list)`` for the benchmark."""
    return lambda x: textbook_forward(backbone, x, r_list)
