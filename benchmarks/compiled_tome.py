"""Compiled forwards for the ToMe throughput benchmark.

``torch.compile`` (inductor, with weight freezing, the usual setting for CPU
inference) of exactly the forwards ``tools/analysis/benchmark_speed.py``
times: the stock forward for ``none`` and the library's ToMe forward for a
merge schedule. Both trace into one graph (``tests/test_tome/
test_tome_compile.py``), so inductor can fuse the merging step and the
element-wise work of every block. A compiled merged setting is compared
with the compiled stock forward (``none@compiled``), so compilation helps
both sides of the ratio.

Shapes are compiled static (``dynamic=False``): every setting compiles the
same forward function with a different ``r`` list, and with the default
automatic dynamic shapes the second compilation would make the ``r``
values symbolic, a graph whose inductor compilation did not finish in 15
minutes here. The first call compiles (10-90 s per setting on two CPU
cores); the benchmark's warm-up rounds absorb it.
"""
from typing import Any, Callable, Sequence

from torch import Tensor, nn

__all__ = ['COMPILE_OPTIONS', 'compiled_forward_fn']

#: Inductor options of every compiled forward.
COMPILE_OPTIONS = {'freezing': True}
#: Recompilations allowed per code object: every setting x backend of a
#: benchmark process compiles the same forward function again.
RECOMPILE_LIMIT = 64


def compiled_forward_fn(model: nn.Module,
                        r_list: Sequence[int]) -> Callable[[Tensor], Any]:
    """``images -> outs`` of ``benchmark_speed.forward_fn(model, r_list)``,
    compiled with inductor, static shapes and :data:`COMPILE_OPTIONS`.

    Args:
        model (nn.Module): mmpretrain or timm ViT in eval mode; call the
            result under ``torch.no_grad()`` (freezing needs it).
        r_list (Sequence[int]): ``r`` per block (all zeros: the stock
            forward).

    Returns:
        Callable: The compiled forward.
    """
    import common
    import torch
    limit = torch._dynamo.config.recompile_limit
    torch._dynamo.config.recompile_limit = max(limit, RECOMPILE_LIMIT)
    forward = common.load_tool('benchmark_speed').forward_fn(model, r_list)
    return torch.compile(
        forward, dynamic=False, options=dict(COMPILE_OPTIONS))
