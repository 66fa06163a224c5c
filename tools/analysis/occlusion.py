"""Robustness to random patch occlusion: top-1 vs occluded share.

At each fraction f in 0, 0.1, ..., 1.0, ``floor(f * N + 0.5)`` (f * N
rounded half up) of the N patches of every test image (the ViT's patch grid,
or ``--patch-size`` cells) are set to ``--fill`` (default 0) *after*
normalisation, i.e. to the dataset mean colour. The occlusions depend only
on ``--seed``, the fractions, the batch size and the (unshuffled) test
loader, so all checkpoints see the same ones (with ``--configs``, every
checkpoint runs with the first config's batch size unless ``--batch-size``
is given). Several checkpoints go on one plot.

Examples::

    python tools/analysis/occlusion.py \\
        configs/demo/vit-tiny_1xb64-mergemix_digits-32px.py \\
        work_dirs/demo/epoch_30.pth --out work_dirs/occlusion

    python tools/analysis/occlusion.py CONFIG \\
        --checkpoints mergemix.pth mixup.pth --labels MergeMix Mixup \\
        --out DIR

Writes ``DIR/occlusion.png``, ``DIR/occlusion.md`` and
``DIR/occlusion.json``.
"""
import argparse
import math
import os
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from _analysis_common import (add_label_args, add_loader_args,  # noqa: E402
                              check_inputs, check_loader_args,
                              check_out_dir, check_per_checkpoint,
                              command_line, default_labels,
                              iter_checkpoint_models, run_cli,
                              write_report)

__all__ = ['parse_args', 'main', 'format_table']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Top-1 accuracy under random patch occlusion')
    parser.add_argument('config', help='config file (model and test data)')
    parser.add_argument('checkpoint',
                        nargs='*',
                        help='checkpoint file(s) (or use --checkpoints)')
    parser.add_argument('--checkpoints',
                        nargs='+',
                        default=[],
                        help='more checkpoint files, drawn on one plot')
    add_label_args(parser)
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument(
        '--fractions',
        nargs='+',
        type=float,
        default=[i / 10 for i in range(11)],
        help='occluded shares in [0, 1] (default: 0 0.1 ... 1.0)')
    parser.add_argument(
        '--patch-size',
        type=int,
        default=None,
        help='occlusion cell size in pixels (default: the ViT patch size; '
        'required for non-ViT backbones)')
    parser.add_argument('--fill',
                        type=float,
                        default=0.0,
                        help='value of occluded pixels after normalisation '
                        '(default: 0 = dataset mean)')
    parser.add_argument('--seed',
                        type=int,
                        default=0,
                        help='seed of the occlusion pattern (default: 0)')
    add_loader_args(parser)
    args = parser.parse_args(argv)
    args.checkpoints = list(args.checkpoint) + list(args.checkpoints)
    if not args.checkpoints:
        parser.error('give at least one checkpoint (positional or '
                     '--checkpoints)')
    check_per_checkpoint(parser, args)
    check_loader_args(parser, args)
    bad = [f for f in args.fractions if not 0 <= f <= 1]
    if bad:
        parser.error(f'--fractions {bad} must lie in [0, 1]')
    if len(set(args.fractions)) != len(args.fractions):
        parser.error(f'--fractions {args.fractions} must be distinct (each '
                     'is one point of the curve)')
    if not math.isfinite(args.fill):
        parser.error(f'--fill {args.fill} must be a finite number')
    if args.patch_size is not None and args.patch_size < 1:
        parser.error(f'--patch-size {args.patch_size} must be >= 1')
    check_out_dir(parser, args.out)
    return args


def format_table(curves) -> str:
    """Markdown table: one row per fraction, one column per model."""
    labels = list(curves)
    fractions = curves[labels[0]]['fractions']
    lines = [
        '| occluded (%) | ' + ' | '.join(labels) + ' |',
        '| ---: | ' + ' | '.join('---:' for _ in labels) + ' |'
    ]
    for i, frac in enumerate(fractions):
        cells = ' | '.join(f"{curves[lb]['top1'][i]:.2f}" for lb in labels)
        lines.append(f'| {100 * frac:.0f} | {cells} |')
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    # checked before the heavy imports, so a typo fails fast
    configs = check_inputs(args)
    from mergemix_mm.analysis import (occlusion_curve, plot_occlusion,
                                      resolve_device)

    labels = args.labels or default_labels(args.checkpoints)
    if len(set(labels)) != len(labels):
        raise ValueError(f'--labels {labels} must be distinct.')
    device = resolve_device(args.device)
    if args.batch_size is None and len(set(configs)) > 1:
        # the occlusion masks are drawn batch by batch: one batch size for
        # every checkpoint, so that all of them see the same occlusions
        from mergemix_mm.analysis import load_config
        loader_cfg = load_config(configs[0], args.cfg_options).get(
            f'{args.split}_dataloader') or {}
        args.batch_size = loader_cfg.get('batch_size')
    curves, records = {}, []
    for label, config, ckpt, model, loader in iter_checkpoint_models(
            args, labels, configs, device):
        curve = occlusion_curve(model,
                                loader,
                                args.fractions,
                                args.patch_size,
                                args.seed,
                                args.fill,
                                args.max_batches,
                                desc=f'occlusion {label}')
        curves[label] = curve
        records.append(
            dict(label=label, config=config, checkpoint=ckpt, **curve))
        pairs = ', '.join(f'{100 * f:.0f}%: {a:.1f}'
                          for f, a in zip(curve['fractions'], curve['top1']))
        print(f'{label} (top-1 %, patch {curve["patch_size"]}): {pairs}')
    os.makedirs(args.out, exist_ok=True)  # only now: nothing on failure
    png = osp.join(args.out, 'occlusion.png')
    sizes = {tuple(r['patch_size']) for r in records}
    if len(sizes) == 1:
        (ph, pw), = sizes
        title, plotted = f'random {ph}x{pw} patch occlusion', curves
    else:  # each curve names its own cell size
        title = 'random patch occlusion'
        plotted = {f"{label} ({c['patch_size'][0]}x{c['patch_size'][1]})": c
                   for label, c in curves.items()}
    counts = sorted({r['num_samples'] for r in records})
    plot_occlusion(plotted, png, f"{title} "
                   f"({'/'.join(map(str, counts))} images)")
    table = format_table(curves)
    command = command_line('occlusion', argv)
    cells = ', '.join(f"{r['label']} {r['patch_size'][0]}x"
                      f"{r['patch_size'][1]}" for r in records)
    write_report(
        args, 'occlusion',
        f'# Random patch occlusion (top-1 %, split {args.split!r}, '
        f'fill {args.fill}, seed {args.seed})\n\n`{command}`\n\n'
        f'Occlusion cells: {cells}.\n\n'
        f'{table}\n\n![occlusion](occlusion.png)\n',
        command, device, records, split=args.split, fill=args.fill,
        seed=args.seed)
    print(table)
    print(f'wrote {png}')
    return records


if __name__ == '__main__':
    run_cli(main)
