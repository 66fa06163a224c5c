"""The reference ToMe implementation as a yardstick for the throughput
benchmark (optional; not part of this repository).

Issue 7 states its throughput target by what "a reference ToMe
implementation" reaches on this machine kind. This module times that
implementation, facebookresearch/ToMe, in the same rounds as this library's
forward, so both are measured on the same host on the same day.

The reference is CC-BY-NC and is **not** shipped, vendored or copied here:
the benchmark imports it only if the user has put it on the Python path
(``git clone https://github.com/facebookresearch/ToMe`` then
``PYTHONPATH=/path/to/ToMe`` or ``pip install -e /path/to/ToMe``).

The reference patches a timm ``VisionTransformer`` in place (it swaps the
classes of the model, its blocks and their attention). To leave the
benchmarked stock model untouched it patches a deep copy, with the
classifier removed so that the patched model returns the same pre-logits
features as the stock forward it is compared with.
"""
import copy
import os.path as osp
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    'load_reference', 'reference_location', 'reference_forward_fn',
    'max_difference'
]

_INSTALL_HINT = (
    "the official ToMe package 'tome' (facebookresearch/ToMe, CC-BY-NC, not "
    'shipped here): clone https://github.com/facebookresearch/ToMe and put '
    'it on PYTHONPATH')


def load_reference() -> Callable:
    """The reference's timm patch function, ``tome.patch.timm.apply_patch``.

    Raises:
        ImportError: If the reference is not importable; the message names
            ``--reference`` and how to install it.
    """
    try:
        from tome.patch.timm import apply_patch
    except ImportError as err:
        raise ImportError(
            f'--reference needs {_INSTALL_HINT} ({err})') from err
    return apply_patch


def reference_location() -> str:
    """Folder the reference's ``tome`` package is imported from, recorded
    with the results.

    Raises:
        ImportError: If the reference is not importable.
    """
    load_reference()
    import tome
    return osp.dirname(osp.abspath(tome.__file__))


def reference_forward_fn(model: nn.Module,
                         r_list: Sequence[int],
                         prop_attn: bool = False) -> Callable:
    """Forward of the reference ToMe patch on a copy of a timm ViT.

    Args:
        model (nn.Module): timm ``VisionTransformer`` (left unchanged).
        r_list (Sequence[int]): Tokens merged per block (all zeros: the
            reference's own un-merged forward, explicit attention).
        prop_attn (bool): The reference's proportional attention. False
            computes the same function as this library's
            ``tome_timm_forward(..., prop_attn=False)``. Defaults to False.

    Returns:
        Callable: ``fn(images) -> (features,)`` with the stock forward's
        pre-logits features.

    Raises:
        ImportError: If the reference is not importable.
        ValueError: If ``r_list`` does not have one entry per block.
    """
    apply_patch = load_reference()
    r_list = [int(r) for r in r_list]
    if len(r_list) != len(model.blocks):
        raise ValueError(f'r_list has {len(r_list)} entries but the model '
                         f'has {len(model.blocks)} blocks')
    patched = copy.deepcopy(model)
    patched.reset_classifier(0)
    apply_patch(patched, trace_source=False, prop_attn=prop_attn)
    patched.eval()

    def fn(x: Tensor) -> tuple:
        patched.r = list(r_list)  # the reference consumes its schedule
        return (patched(x), )

    return fn


def max_difference(model: nn.Module, r_list: Sequence[int], images: Tensor,
                   fn: Callable) -> float:
    """Largest absolute difference between a reference forward and this
    library's ToMe forward of the same timm model and schedule.

    Args:
        model (nn.Module): The timm ``VisionTransformer`` ``fn`` was built
            from.
        r_list (Sequence[int]): The schedule ``fn`` merges with.
        images (Tensor): ``[B, 3, H, W]`` inputs.
        fn (Callable): From :func:`reference_forward_fn` (proportional
            attention off, the same function as
            ``tome_timm_forward(..., prop_attn=False)``).

    Returns:
        float: ``max |reference - this library|`` over the pre-logits
        features.
    """
    from mergemix_mm.models.tome import tome_timm_forward
    with torch.inference_mode():
        ours = tome_timm_forward(
            model, images, list(r_list), trace_source=False).outs[0]
        theirs = fn(images)[0]
    return (ours.float() - theirs.float()).abs().max().item()
