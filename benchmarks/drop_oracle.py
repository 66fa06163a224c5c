"""Token-dropping bound for the ToMe throughput benchmark.

A merged forward can only be as fast as the blocks it runs at the reduced
token counts. This module times exactly that: the library's own ToMe forward
(:func:`~mergemix_mm.models.tome.tome_vit_forward` /
:func:`~mergemix_mm.models.tome.tome_timm_forward`, stock sub-modules, fused
attention, the same token count in every block) with the merging step
replaced by the cheapest operation that yields ``T - r`` tokens: keep the
first ``T - r`` tokens (one contiguous copy; no metric, no matching, no
weighted average).

Its speed-up over the stock forward is therefore what a merge schedule could
gain on the machine if matching and merging cost nothing beyond one copy of
the tokens: an upper bound for any ToMe implementation with the same
attention kernel. The gap between it and the real merged forward is the cost
of the merging step. The outputs are meaningless (tokens are discarded, not
merged); use it for timing only.
"""
from typing import Callable, ContextManager, Optional, Sequence, Tuple

from torch import Tensor, nn

__all__ = ['drop_tokens', 'dropping_merge', 'drop_forward_fn']


def drop_tokens(
        x: Tensor, size: Optional[Tensor], source: Optional[Tensor],
        keys: Tensor, r: int, num_protected: int
) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """Stand-in for :func:`mergemix_mm.models.tome.functional.merge_tokens`
    (same signature) that keeps the first ``T - r`` tokens.

    Raises:
        ValueError: If a source map is tracked (dropping has none) or ``r``
            exceeds what ToMe could merge.
    """
    if r == 0:
        return x, size, source
    if source is not None:
        raise ValueError('the token-dropping bound is for timing only; run '
                         'the forward with trace_source=False and no '
                         'attn_layer')
    T = x.shape[1]
    if not 0 < r <= (T - num_protected) // 2:
        raise ValueError(f'r={r} is out of range for {T} tokens')
    keep = T - r
    x = x[:, :keep].contiguous()
    if size is not None:
        size = size[:, :keep].contiguous()
    return x, size, source


def dropping_merge() -> ContextManager:
    """Within the block, the library's ToMe forwards drop tokens instead of
    merging them (``benchmark_speed.merge_step_replaced``: the merging step
    is put back on exit, also after an error)."""
    import common
    return common.load_tool('benchmark_speed').merge_step_replaced(
        drop_tokens)


def drop_forward_fn(model: nn.Module,
                    r_list: Sequence[int]) -> Callable[[Tensor], tuple]:
    """``images -> outs`` of the library's ToMe forward of ``model`` (an
    mmpretrain or timm ViT) with tokens dropped instead of merged.

    Args:
        model (nn.Module): mmpretrain ``VisionTransformer`` (or subclass) or
            timm ``VisionTransformer``, in eval mode.
        r_list (Sequence[int]): Tokens dropped after each block's attention.

    Returns:
        Callable: The forward, for ``benchmark_speed.run_benchmark(extra=)``.
    """
    from mergemix_mm.models.tome import tome_timm_forward, tome_vit_forward
    from mergemix_mm.models.tome.timm_vit import is_timm_vit
    forward = tome_timm_forward if is_timm_vit(model) else tome_vit_forward
    r_list = list(r_list)

    def fn(x: Tensor) -> tuple:
        with dropping_merge():
            return forward(model, x, r_list, trace_source=False).outs

    return fn
