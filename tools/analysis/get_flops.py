"""FLOPs of a ViT with token merging (ToMe), per image.

Counts multiply-accumulates of every ``nn.Linear`` and ``nn.Conv2d`` that
runs (forward hooks see the real, merged token counts), i.e. the
Linear/Conv-only convention of mmcv / fvcore (one MAC = one FLOP), and
separately the attention matmuls ``Q K^T`` and ``A V`` (``2 T^2 D`` per
block for ``T`` tokens entering it). Normalisation, activations, softmax and
the merging itself are not counted.

Examples::

    # DeiT-S 224 px, no merging and MergeMix merge_num=49 (ImageNet)
    python tools/analysis/get_flops.py --arch deit-small \
        --settings none merge49

    # from an mmpretrain config (the classifier's backbone and head)
    python tools/analysis/get_flops.py configs/xxx.py --settings none merge98

Settings: ``none``, ``merge<N>`` (MergeMix schedule; a config's ToMe
backbone spreads it with its own ``merge_inflect`` / ``schedule_compat``),
``r<N>`` (ToMe constant r).
"""
import argparse
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from _analysis_common import run_cli  # noqa: E402

__all__ = ['count_flops', 'build_from_args', 'main']


def count_flops(model: nn.Module,
                r_list: Optional[Sequence[int]] = None,
                img_size: int = 224,
                in_channels: int = 3) -> Dict[str, float]:
    """Count the FLOPs of one image through ``model``.

    Args:
        model (nn.Module): A ViT backbone supported by
            :func:`mergemix_mm.models.tome.forward_with_attention`, or an
            mmpretrain classifier whose ``backbone`` is one (its ``neck`` and
            ``head`` are counted too).
        r_list (Sequence[int], optional): ``r`` per block. None counts
            the backbone's own evaluation schedule: a ToMe backbone's
            test-time merging, no merging for a stock ViT. Pass
            ``[0] * num_layers`` to count a ToMe backbone unmerged.
            Defaults to None.
        img_size (int): Square input size. Defaults to 224.
        in_channels (int): Input channels. Defaults to 3.

    Returns:
        dict: ``linear_conv`` and ``attention`` (FLOPs), ``total``
        (their sum), ``params`` and ``tokens`` (tokens entering each block,
        then the final count).
    """
    from mergemix_mm.models.tome import forward_with_attention
    backbone = getattr(model, 'backbone', model)
    counts = dict(linear_conv=0, attention=0)

    def linear_hook(mod, inputs, output):
        x = inputs[0]
        rows = x.numel() // x.shape[-1]
        counts['linear_conv'] += rows * mod.in_features * mod.out_features

    def qkv_hook(mod, inputs, output):
        x = inputs[0]
        tokens = x.shape[-2]
        dim = mod.out_features // 3
        counts['attention'] += 2 * tokens * tokens * dim * (
            x.numel() // (tokens * x.shape[-1]))

    def conv_hook(mod, inputs, output):
        k = mod.kernel_size[0] * mod.kernel_size[1]
        counts['linear_conv'] += output.numel() * k * (
            mod.in_channels // mod.groups)

    handles = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            handles.append(mod.register_forward_hook(linear_hook))
            if name.endswith('attn.qkv'):
                handles.append(mod.register_forward_hook(qkv_hook))
        elif isinstance(mod, nn.Conv2d):
            handles.append(mod.register_forward_hook(conv_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = torch.zeros(1, in_channels, img_size, img_size)
            out = forward_with_attention(
                backbone, x, r_list=r_list, trace_source=False)
            if backbone is not model:
                feats = out.outs
                if getattr(model, 'neck', None) is not None:
                    feats = model.neck(feats)
                if getattr(model, 'head', None) is not None:
                    model.head(feats)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return dict(
        linear_conv=float(counts['linear_conv']),
        attention=float(counts['attention']),
        total=float(counts['linear_conv'] + counts['attention']),
        params=float(params),
        tokens=out.token_counts)


def build_from_args(config: Optional[str], arch: str,
                    img_size: Optional[int]) -> nn.Module:
    """An mmpretrain model from a config, or a bare ViT backbone for
    ``arch`` at ``img_size`` (unused with a config)."""
    import mergemix_mm  # noqa: F401
    from mmpretrain.registry import MODELS
    if config:
        from mergemix_mm.analysis import load_config
        model = MODELS.build(load_config(config).model)
    else:
        try:
            model = MODELS.build(
                dict(type='ToMeVisionTransformer', arch=arch,
                     img_size=img_size))
        except AssertionError as err:  # mmpretrain's unknown-arch assert
            raise ValueError(f'--arch {arch!r}: {err}') from err
    return model


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'config', nargs='?', default=None, help='mmpretrain config (optional)')
    parser.add_argument(
        '--arch',
        default='deit-small',
        help='ViT arch when no config is given')
    parser.add_argument(
        '--img-size',
        type=int,
        default=None,
        help='square input size (default: the config backbone\'s img_size, '
        '224 without a config)')
    parser.add_argument('--settings', nargs='+', default=['none', 'merge49'])
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> List[dict]:
    args = parse_args(argv)
    from mergemix_mm.analysis import config_img_size, settings_schedules
    if args.img_size is None and not args.config:
        args.img_size = 224
    if args.img_size is not None and args.img_size < 1:
        raise ValueError(f'--img-size {args.img_size} must be >= 1')
    model = build_from_args(args.config, args.arch, args.img_size)
    backbone = getattr(model, 'backbone', model)
    if args.img_size is None:  # a config's own size
        args.img_size = config_img_size(backbone)
    # every setting checked before the table starts
    schedules = settings_schedules(args.settings, backbone, args.img_size)
    name = args.config or args.arch
    print(f'{name}, {args.img_size} px, per image (1 MAC = 1 FLOP)')
    print('| setting | tokens out | GFLOPs (Linear/Conv) | '
          'GFLOPs (+ attention matmuls) | params (M) |')
    print('| --- | --- | --- | --- | --- |')
    rows = []
    for setting in args.settings:
        res = count_flops(model, schedules[setting], args.img_size)
        res['setting'] = setting
        rows.append(res)
        print(f"| {setting} | {res['tokens'][-1]} | "
              f"{res['linear_conv'] / 1e9:.2f} | {res['total'] / 1e9:.2f} | "
              f"{res['params'] / 1e6:.2f} |")
    return rows


if __name__ == '__main__':
    run_cli(main)
