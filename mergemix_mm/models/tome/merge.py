"""Token merging primitives: bipartite soft matching, weighted merging and
source tracking.

Clean-room implementation of the operations described in *Token Merging: Your
ViT but Faster* (Bolya et al., ICLR 2023), written from the paper and the
MergeMix specification (``ALGORITHM.md`` §3). Everything here is a pure
function over tensors; no state is stored on modules.

Conventions:

* ``B`` batch, ``T`` tokens entering a block, ``C`` channels, ``N0`` tokens of
  the original (un-merged) sequence, including the extra (protected) tokens.
* A *token map* ``token_map[b, t]`` is the index, in the output sequence, of
  the token that input token ``t`` ended up in.
* A *source map* ``source[b, j]`` is the index, in the current sequence, of the
  token that original token ``j`` ended up in. Composing a source map with a
  token map gives the source map after one more merging step.
"""
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    'Matching', 'bipartite_soft_matching', 'merge_wavg', 'merge_source',
    'init_source', 'recover', 'recover_patch_grid', 'source_to_sizes',
    'head_mean_metric', 'source_order', 'reorder_tokens'
]


class Matching(NamedTuple):
    """Result of :func:`bipartite_soft_matching` (indices only, no grad).

    Attributes:
        num_out (int): Number of output tokens, ``T - r``.
        r (int): Number of merged-away tokens.
        keep_idx (Tensor): ``LongTensor[B, T - r]``; for every output slot, the
            input token that occupies it (a protected, unmerged or destination
            token).
        src_idx (Tensor): ``LongTensor[B, r]``; input indices of the tokens
            that are merged away.
        dst_idx (Tensor): ``LongTensor[B, r]``; output index each merged-away
            token is added to.
    """
    num_out: int
    r: int
    keep_idx: Tensor
    src_idx: Tensor
    dst_idx: Tensor

    @property
    def token_map(self) -> Tensor:
        """``LongTensor[B, T]``: input token index -> output token index.

        Built on access (only source tracking needs it), so merging without
        source tracking does not pay for it.
        """
        B, n = self.keep_idx.shape
        device = self.keep_idx.device
        token_map = torch.empty(
            B, n + self.r, dtype=torch.long, device=device)
        token_map.scatter_(1, self.keep_idx,
                           torch.arange(n, device=device).expand(B, -1))
        if self.r:
            token_map.scatter_(1, self.src_idx, self.dst_idx)
        return token_map


def head_mean_metric(keys: Tensor) -> Tensor:
    """Per-sample matching metric: keys averaged over heads.

    Args:
        keys (Tensor): Keys of shape ``[B, H, T, head_dim]``.

    Returns:
        Tensor: ``[B, T, head_dim]``. The batch dimension is never reduced.
    """
    if keys.dim() != 4:
        raise ValueError(
            'keys must have shape [B, H, T, head_dim], got '
            f'{tuple(keys.shape)}'
        )
    return keys.mean(dim=1)


def _identity_matching(batch_size: int, num_tokens: int,
                       device: torch.device) -> Matching:
    ar = torch.arange(num_tokens, device=device).expand(batch_size, -1)
    empty = torch.empty(batch_size, 0, dtype=torch.long, device=device)
    return Matching(num_tokens, 0, ar, empty, empty)


def bipartite_soft_matching(metric: Tensor,
                            r: int,
                            num_protected: int = 1) -> Matching:
    """Bipartite soft matching of ToMe, per sample, with protected tokens.

    Tokens at even positions form set A, tokens at odd positions set B. Every
    non-protected A token proposes its most similar (cosine) non-protected B
    token; the ``r`` A tokens with the highest similarity are merged into their
    partner. The first ``num_protected`` tokens (CLS, DeiT's distillation
    token, timm register tokens) are never merged and never receive a merge.

    The output order is ``[protected tokens (original order), unmerged
    non-protected A tokens (original order), non-protected B tokens (original
    order)]``. For ``num_protected=1`` this equals the order of the ToMe
    reference (``[unmerged A sorted, B]``).

    Args:
        metric (Tensor): Matching features ``[B, T, C]`` (e.g. keys averaged
            over heads, see :func:`head_mean_metric`).
        r (int): Number of tokens to merge away. ``0`` gives the identity.
        num_protected (int): Number of leading tokens that are protected.
            Defaults to 1.

    Returns:
        Matching: Token map and the gather/scatter indices used by
        :func:`merge_wavg`.

    Raises:
        ValueError: If ``r`` is negative or larger than
            ``(T - num_protected) // 2``, or ``num_protected`` is invalid.
    """
    if metric.dim() != 3:
        raise ValueError('metric must have shape [B, T, C], got '
                         f'{tuple(metric.shape)}')
    B, T, _ = metric.shape
    if isinstance(r, bool) or int(r) != r:
        raise ValueError(f'r={r!r} must be an integer')
    r = int(r)
    if not 0 <= num_protected <= T:
        raise ValueError(f'num_protected={num_protected} must lie in '
                         f'[0, {T}] for {T} tokens')
    max_r = (T - num_protected) // 2
    if r < 0 or r > max_r:
        raise ValueError(
            f'r={r} is out of range: with {T} tokens and num_protected='
            f'{num_protected} at most {max_r} tokens can be merged')
    device = metric.device
    if r == 0:
        return _identity_matching(B, T, device)

    p = num_protected
    pa = (p + 1) // 2  # protected tokens in A (even indices < p)
    pb = p // 2  # protected tokens in B (odd indices < p)
    with torch.no_grad():
        metric = F.normalize(metric.detach().float(), dim=-1)
        a = metric[:, 2 * pa::2]  # non-protected A
        b = metric[:, 2 * pb + 1::2]  # non-protected B
        scores = a @ b.transpose(1, 2)  # [B, Ta-pa, Tb-pb] cosine
        # amax is several times faster than max-with-indices on CPU; the
        # partner is only needed for the r merged rows, found below.
        node_max = scores.amax(dim=-1)
        order = node_max.argsort(dim=-1, descending=True)
        src_a = order[:, :r]  # among non-protected A
        unm_a = order[:, r:].sort(dim=-1).values
        src_rows = scores.gather(
            1,
            src_a.unsqueeze(-1).expand(-1, -1, scores.shape[-1]))
        dst_b = src_rows.argmax(dim=-1)  # among non-protected B

        num_unm = unm_a.shape[1]
        # Output slot layout: [0, p) protected, then unmerged A, then B.
        prot = torch.arange(p, device=device).expand(B, -1)
        b_keep = (2 * torch.arange(pb, T // 2, device=device) + 1).expand(
            B, -1)
        keep_idx = torch.cat([prot, 2 * (unm_a + pa), b_keep], dim=1)
        src_idx = 2 * (src_a + pa)
        dst_idx = dst_b + (p + num_unm)
    return Matching(T - r, r, keep_idx, src_idx, dst_idx)


def merge_wavg(x: Tensor, size: Optional[Tensor],
               matching: Matching) -> Tuple[Tensor, Optional[Tensor]]:
    """Size-weighted average merge: a merged token is ``sum(s x) / sum(s)``.

    Args:
        x (Tensor): Tokens ``[B, T, C]``; gradients flow to ``x``.
        size (Tensor, optional): Token sizes ``[B, T, 1]``; ``None`` means all
            ones.
        matching (Matching): Output of :func:`bipartite_soft_matching`.

    Returns:
        tuple[Tensor, Tensor | None]: Merged tokens ``[B, T - r, C]`` and their
        sizes ``[B, T - r, 1]`` (float32 or wider, also under half
        precision). With ``r == 0`` the inputs are returned unchanged
        (``size`` stays ``None`` if it was ``None``).
    """
    if matching.r == 0:
        return x, size
    B, T, C = x.shape
    r, n = matching.r, matching.num_out
    if matching.keep_idx.shape != (B, n) or n + r != T:
        raise ValueError(f'matching was computed for '
                         f'{(matching.keep_idx.shape[0], n + r)} tokens but '
                         f'x has shape {tuple(x.shape)}')
    # Row indices into the flattened [B * T, C] tokens: index_select /
    # index_add_ over whole rows is much faster on CPU than gather / scatter
    # with an index expanded over the channels.
    device = x.device
    off_in = torch.arange(0, B * T, T, device=device).unsqueeze(1)
    off_out = torch.arange(0, B * n, n, device=device).unsqueeze(1)
    keep = (matching.keep_idx + off_in).reshape(-1)
    src = (matching.src_idx + off_in).reshape(-1)
    dst = (matching.dst_idx + off_out).reshape(-1)
    # Sizes stay in (at least) float32 so they remain exact integers under
    # half precision.
    sdtype = torch.promote_types(x.dtype, torch.float32)
    if size is None:
        size_keep = torch.ones(B * n, 1, dtype=sdtype, device=device)
        size_src = torch.ones(B * r, 1, dtype=sdtype, device=device)
    else:
        flat_size = size.to(sdtype).reshape(B * T, 1)
        size_keep = flat_size.index_select(0, keep)
        size_src = flat_size.index_select(0, src)
    size_out = size_keep.index_add(0, dst, size_src)
    # sum(s x) / sum(s) touching only the receiving rows. For a receiving
    # row d that takes in the rows i, with S = s_d + sum_i s_i,
    #     (s_d x_d + sum_i s_i x_i) / S = x_d + sum_i s_i (x_i - x_d) / S,
    # so the kept rows are copied and every merged-away row adds its weighted
    # difference. One index_add_ handles rows that receive several tokens,
    # without de-duplicating ``dst`` (``torch.unique`` has a data-dependent
    # shape and breaks torch.compile graphs) and with exact gradients.
    flat = x.reshape(B * T, C)
    out = flat.index_select(0, keep)
    weight_src = (size_src / size_out.index_select(0, dst)).to(x.dtype)
    delta = flat.index_select(0, src).sub_(out.index_select(0, dst))
    out.index_add_(0, dst, delta.mul_(weight_src))
    return out.view(B, n, C), size_out.view(B, n, 1)


def init_source(batch_size: int,
                num_tokens: int,
                device: Optional[torch.device] = None) -> Tensor:
    """Identity source map ``[B, N0]`` (every token is its own source)."""
    return torch.arange(
        num_tokens, device=device).unsqueeze(0).repeat(batch_size, 1)


def merge_source(source: Tensor, matching: Matching) -> Tensor:
    """Compose a source map with one merging step.

    Args:
        source (Tensor): ``LongTensor[B, N0]``, original token -> current
            index before the merge.
        matching (Matching): The merge applied to the current tokens.

    Returns:
        Tensor: ``LongTensor[B, N0]``, original token -> index after the merge.
    """
    if matching.r == 0:
        return source
    return matching.token_map.gather(1, source)


def recover(scores: Tensor, source: Tensor) -> Tensor:
    """Map per-token values back to the original tokens (un-merge).

    Args:
        scores (Tensor): ``[B, T_cur]`` or ``[B, T_cur, C]`` values of the
            current tokens.
        source (Tensor): ``LongTensor[B, N0]`` source map into the same token
            space as ``scores``.

    Returns:
        Tensor: ``[B, N0]`` or ``[B, N0, C]``; every original token receives
        the value of the token it was merged into.
    """
    if scores.dim() == 2:
        return scores.gather(1, source)
    if scores.dim() == 3:
        return scores.gather(
            1,
            source.unsqueeze(-1).expand(-1, -1, scores.shape[-1]))
    raise ValueError('scores must have shape [B, T] or [B, T, C], got '
                     f'{tuple(scores.shape)}')


def recover_patch_grid(scores: Tensor, source: Tensor, num_extra_tokens: int,
                       patch_resolution: Tuple[int, int]) -> Tensor:
    """Recover per-token scores onto the patch grid.

    Args:
        scores (Tensor): ``[B, T_cur]`` scores of the current tokens.
        source (Tensor): ``LongTensor[B, N0]`` with
            ``N0 = num_extra_tokens + h * w``.
        num_extra_tokens (int): Leading non-patch tokens to drop.
        patch_resolution (tuple[int, int]): Patch grid ``(h, w)``.

    Returns:
        Tensor: ``[B, h, w]``.
    """
    h, w = patch_resolution
    if source.shape[1] != num_extra_tokens + h * w:
        raise ValueError(
            f'source has {source.shape[1]} tokens, expected num_extra_tokens '
            f'({num_extra_tokens}) + {h}x{w} patches')
    full = recover(scores, source[:, num_extra_tokens:])
    return full.reshape(scores.shape[0], h, w)


def source_to_sizes(source: Tensor, num_tokens: int) -> Tensor:
    """Count how many original tokens each current token holds.

    Args:
        source (Tensor): ``LongTensor[B, N0]``.
        num_tokens (int): Number of current tokens.

    Returns:
        Tensor: ``LongTensor[B, num_tokens]``; rows sum to ``N0``.
    """
    counts = torch.zeros(
        source.shape[0], num_tokens, dtype=torch.long, device=source.device)
    return counts.scatter_add_(1, source, torch.ones_like(source))


def source_order(source: Tensor, num_tokens: int) -> Tensor:
    """Order of the current tokens by the first original token each holds.

    Merging outputs ``[protected, unmerged A, B]``, so after one merge the
    tokens are no longer in the order of the original sequence. Sorting them
    by the smallest original index they hold restores that order without
    merging and keeps protected tokens (which hold themselves) in front.

    Args:
        source (Tensor): ``LongTensor[B, N0]`` source map.
        num_tokens (int): Number of current tokens ``T``.

    Returns:
        Tensor: ``LongTensor[B, T]``; ``order[b, i]`` is the current token
        that goes to position ``i``.
    """
    B, n0 = source.shape
    first = torch.full((B, num_tokens), n0, dtype=torch.long,
                       device=source.device)
    originals = torch.arange(n0, device=source.device).expand(B, -1)
    first.scatter_reduce_(1, source, originals, reduce='amin')
    if bool((first == n0).any()):
        raise ValueError(f'source does not cover all {num_tokens} tokens: '
                         'some token holds no original token')
    return first.argsort(dim=1)


def reorder_tokens(x: Tensor, size: Optional[Tensor], source: Tensor,
                   order: Tensor
                   ) -> Tuple[Tensor, Optional[Tensor], Tensor]:
    """Permute tokens, their sizes and the source map consistently.

    Args:
        x (Tensor): Tokens ``[B, T, C]``.
        size (Tensor, optional): Sizes ``[B, T, 1]`` or None.
        source (Tensor): ``LongTensor[B, N0]`` into the current tokens.
        order (Tensor): ``LongTensor[B, T]`` permutation, e.g. from
            :func:`source_order`.

    Returns:
        tuple[Tensor, Tensor | None, Tensor]: The permuted tokens and sizes,
        and the source map into the permuted tokens.
    """
    B, T, C = x.shape
    if order.shape != (B, T):
        raise ValueError(f'order has shape {tuple(order.shape)}, expected '
                         f'{(B, T)} for tokens of shape {tuple(x.shape)}')
    x = x.gather(1, order.unsqueeze(-1).expand(-1, -1, C))
    if size is not None:
        size = size.gather(1, order.unsqueeze(-1))
    position = torch.empty_like(order).scatter_(
        1, order, torch.arange(T, device=order.device).expand(B, -1))
    return x, size, position.gather(1, source)
