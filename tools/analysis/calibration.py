"""Calibration of classifiers: ECE (15 bins), reliability diagram, table.

The confidence of a prediction is its maximum softmax probability;
ECE = sum_b (n_b / N) |acc_b - conf_b| over 15 equal-width bins (see
``mergemix_mm/analysis/calibration.py``). Several checkpoints can be compared
side by side (one diagram each).

Examples::

    python tools/analysis/calibration.py \\
        configs/demo/vit-tiny_1xb64-mergemix_digits-32px.py \\
        work_dirs/demo/epoch_30.pth --out work_dirs/calibration

    # two methods, same architecture and data
    python tools/analysis/calibration.py CONFIG a.pth b.pth \\
        --labels MergeMix Mixup --out DIR

Writes ``DIR/reliability.png``, ``DIR/calibration.md`` and
``DIR/calibration.json``.
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

__all__ = ['parse_args', 'main', 'format_table']


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='ECE and reliability diagrams of checkpoints')
    parser.add_argument('config', help='config file (model and test data)')
    parser.add_argument('checkpoints', nargs='+', help='checkpoint file(s)')
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument('--labels',
                        nargs='+',
                        help='legend label per checkpoint (default: file '
                        'names)')
    parser.add_argument(
        '--configs',
        nargs='+',
        help='one config per checkpoint, when they differ (default: CONFIG '
        'for all)')
    parser.add_argument('--num-bins',
                        type=int,
                        default=15,
                        help='equal-width confidence bins (default: 15)')
    parser.add_argument('--split',
                        default='test',
                        choices=['train', 'val', 'test'],
                        help='dataloader to evaluate (default: test)')
    parser.add_argument('--batch-size',
                        type=int,
                        default=None,
                        help='override the dataloader batch size')
    parser.add_argument('--max-batches',
                        type=int,
                        default=None,
                        help='evaluate only the first N batches')
    parser.add_argument('--device',
                        default=None,
                        help='cpu | cuda | cuda:N (default: cuda if '
                        'available)')
    parser.add_argument('--cfg-options',
                        nargs='+',
                        action=DictAction,
                        help='override config settings')
    args = parser.parse_args(argv)
    if args.labels is not None and len(args.labels) != len(args.checkpoints):
        parser.error(f'--labels has {len(args.labels)} entries for '
                     f'{len(args.checkpoints)} checkpoint(s)')
    if args.configs is not None and len(args.configs) != len(args.checkpoints):
        parser.error(f'--configs has {len(args.configs)} entries for '
                     f'{len(args.checkpoints)} checkpoint(s)')
    if args.num_bins < 1:
        parser.error(f'--num-bins {args.num_bins} must be >= 1')
    return args


def format_table(rows) -> str:
    """Markdown table of ``(label, CalibrationResult)`` rows."""
    lines = [
        '| model | samples | top-1 (%) | mean confidence (%) | ECE (%) | '
        'MCE (%) |', '| --- | ---: | ---: | ---: | ---: | ---: |'
    ]
    for label, res in rows:
        lines.append(
            f'| {label} | {res.num_samples} | {100 * res.accuracy:.2f} | '
            f'{100 * res.mean_confidence:.2f} | {100 * res.ece:.2f} | '
            f'{100 * res.mce:.2f} |')
    return '\n'.join(lines)


def _default_labels(paths):
    names = [osp.splitext(osp.basename(p))[0] for p in paths]
    if len(set(names)) == len(names):
        return names
    return [
        osp.join(osp.basename(osp.dirname(osp.abspath(p))), n)
        for p, n in zip(paths, names)
    ]


def main(argv=None):
    args = parse_args(argv)
    # checked before the heavy imports, so a typo fails fast
    configs = args.configs or [args.config] * len(args.checkpoints)
    for path in configs:
        if not osp.isfile(path):
            raise FileNotFoundError(f'config file {path!r} does not exist.')
    for ckpt in args.checkpoints:
        if not osp.isfile(ckpt):
            raise FileNotFoundError(
                f'checkpoint file {ckpt!r} does not exist.')
    import torch

    from mergemix_mm.analysis import (build_loader, build_model,
                                      calibration_from_scores, load_config,
                                      plot_reliability, predict_batches,
                                      resolve_device)

    labels = args.labels or _default_labels(args.checkpoints)
    device = resolve_device(args.device)
    os.makedirs(args.out, exist_ok=True)
    rows, records = [], []
    for label, config, ckpt in zip(labels, configs, args.checkpoints):
        cfg = load_config(config, args.cfg_options)
        model = build_model(cfg, ckpt, device)
        loader = build_loader(cfg, args.split, args.batch_size)
        scores, gts = [], []
        for score, gt in predict_batches(model,
                                         loader,
                                         max_batches=args.max_batches,
                                         desc=f'calibration {label}'):
            scores.append(score)
            gts.append(gt)
        result = calibration_from_scores(torch.cat(scores), torch.cat(gts),
                                         args.num_bins)
        rows.append((label, result))
        records.append(
            dict(label=label,
                 config=config,
                 checkpoint=ckpt,
                 **result.to_dict()))
        print(f'{label}: top-1 {100 * result.accuracy:.2f}%  '
              f'ECE {100 * result.ece:.2f}%  MCE {100 * result.mce:.2f}%  '
              f'({result.num_samples} samples)')
    png = osp.join(args.out, 'reliability.png')
    plot_reliability(rows, png)
    table = format_table(rows)
    command = 'python tools/analysis/calibration.py ' + ' '.join(
        sys.argv[1:] if argv is None else argv)
    with open(osp.join(args.out, 'calibration.md'), 'w') as f:
        f.write(f'# Calibration ({args.num_bins} bins, split '
                f'{args.split!r})\n\n`{command}`\n\n{table}\n\n'
                '![reliability](reliability.png)\n')
    with open(osp.join(args.out, 'calibration.json'), 'w') as f:
        json.dump(dict(command=command,
                       num_bins=args.num_bins,
                       split=args.split,
                       device=str(device),
                       max_batches=args.max_batches,
                       results=records),
                  f,
                  indent=2)
    print(table)
    print(f'wrote {png}')
    return records


if __name__ == '__main__':
    try:
        main()
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f'error: {err}')
