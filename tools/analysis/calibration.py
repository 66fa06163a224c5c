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
        description='ECE and reliability diagrams of checkpoints')
    parser.add_argument('config', help='config file (model and test data)')
    parser.add_argument('checkpoints', nargs='+', help='checkpoint file(s)')
    parser.add_argument('--out', required=True, help='output directory')
    add_label_args(parser)
    parser.add_argument('--num-bins',
                        type=int,
                        default=15,
                        help='equal-width confidence bins (default: 15)')
    add_loader_args(parser)
    args = parser.parse_args(argv)
    check_per_checkpoint(parser, args)
    check_loader_args(parser, args)
    if args.num_bins < 1:
        parser.error(f'--num-bins {args.num_bins} must be >= 1')
    check_out_dir(parser, args.out)
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


def main(argv=None):
    args = parse_args(argv)
    # checked before the heavy imports, so a typo fails fast
    configs = check_inputs(args)
    import torch

    from mergemix_mm.analysis import (calibration_from_scores,
                                      plot_reliability, predict_batches,
                                      resolve_device)

    labels = args.labels or default_labels(args.checkpoints)
    if len(set(labels)) != len(labels):
        raise ValueError(f'--labels {labels} must be distinct.')
    device = resolve_device(args.device)
    rows, records = [], []
    for label, config, ckpt, model, loader in iter_checkpoint_models(
            args, labels, configs, device):
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
    os.makedirs(args.out, exist_ok=True)  # only now: nothing on failure
    png = osp.join(args.out, 'reliability.png')
    plot_reliability(rows, png)
    table = format_table(rows)
    command = command_line('calibration', argv)
    write_report(
        args, 'calibration',
        f'# Calibration ({args.num_bins} bins, split {args.split!r})\n\n'
        f'`{command}`\n\n{table}\n\n![reliability](reliability.png)\n',
        command, device, records, num_bins=args.num_bins, split=args.split)
    print(table)
    print(f'wrote {png}')
    return records


if __name__ == '__main__':
    run_cli(main)
