"""Draw what a config's batch augment(s) do to a few samples.

For every batch augment of the config (MergeMix, the registered baselines,
mmpretrain's Mixup / CutMix, ...) one PNG grid is written: own image,
partner, saliency / attention map (methods that have one), pixel mask, mixed
image with its soft label, and the own-image label weight (lambda).

Examples::

    python tools/analysis/visualize_mix.py \\
        configs/demo/vit-tiny_1xb64-mergemix_digits-32px.py \\
        --checkpoint work_dirs/demo/epoch_30.pth --out work_dirs/vis

    python tools/analysis/visualize_mix.py \\
        configs/baselines/digits/vit-tiny_1xb64-cutmix_digits-32px.py \\
        --out work_dirs/vis_cutmix

With ``--checkpoint`` the weights are loaded before anything is mixed, so
model-aware augments (MergeMix, TransMix, TokenMix, ...) use the trained
model's attention. All passes run in eval mode (no dropout / drop-path), so
the pictures are reproducible for a given ``--seed``.
"""
import argparse
import json
import os
import os.path as osp
import re
import sys
import textwrap

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from _analysis_common import (  # noqa: E402
    cfg_options_action, check_out_dir, run_cli)

__all__ = ['parse_args', 'main']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Visualise the batch augments of a config')
    parser.add_argument('config', help='config file')
    parser.add_argument('--checkpoint',
                        help='checkpoint whose weights drive model-aware '
                        'augments (default: randomly initialised model)')
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument(
        '--split',
        default='train',
        choices=['train', 'val', 'test'],
        help='dataloader whose pipeline gives the samples (default: train)')
    parser.add_argument('--num-samples',
                        type=int,
                        default=6,
                        help='rows drawn per augment (default: 6)')
    parser.add_argument(
        '--batch-size',
        type=int,
        default=None,
        help='images mixed together (partners come from this batch); '
        'default: --num-samples')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--device',
                        default=None,
                        help='cpu | cuda | cuda:N (default: cuda if '
                        'available)')
    parser.add_argument(
        '--bgr',
        action='store_true',
        help='the normalised tensors are BGR (to_rgb=False with OpenCV '
        'loading): flip them for display')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=cfg_options_action(),
        help='override config settings, e.g. model.train_cfg.augments.0.'
        'alpha=2.0')
    args = parser.parse_args(argv)
    if args.num_samples < 1:
        parser.error(f'--num-samples {args.num_samples} must be >= 1')
    if args.batch_size is None:
        args.batch_size = max(args.num_samples, 2)
    if args.batch_size < 2:
        parser.error(f'--batch-size {args.batch_size} must be >= 2 (one '
                     'image cannot be mixed)')
    if args.num_samples > args.batch_size:
        parser.error(f'--num-samples {args.num_samples} is more than '
                     f'--batch-size {args.batch_size}: the rows come from '
                     'one mixed batch')
    check_out_dir(parser, args.out)
    return args


def batch_augments_of(model):
    """The model's batch augments (no ``RandomBatchAugment`` None slot)."""
    wrapper = getattr(model.data_preprocessor, 'batch_augments', None)
    if wrapper is None:
        return [], None
    augments = [
        a for a in getattr(wrapper, 'augments', [wrapper]) if a is not None
    ]
    probs = getattr(wrapper, 'probs', None)
    return augments, probs


def main(argv=None):
    args = parse_args(argv)
    # checked before the heavy imports, so a typo fails fast
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file {args.config!r} does not '
                                'exist.')
    if args.checkpoint is not None and not osp.isfile(args.checkpoint):
        raise FileNotFoundError(
            f'checkpoint file {args.checkpoint!r} does not exist.')
    import torch
    from mmengine.runner import set_random_seed

    from mergemix_mm.analysis import (augment_repr, batch_labels, build_loader,
                                      build_model, class_names_of,
                                      describe_mix, load_config,
                                      num_classes_of, pair_weights_text,
                                      plot_mix_grid, resolve_device)
    from mergemix_mm.utils.checkpoint_safety import atomic_write_text

    device = resolve_device(args.device)
    cfg = load_config(args.config, args.cfg_options)
    # random init (no checkpoint) and the train pipeline's random transforms
    set_random_seed(args.seed)
    model = build_model(cfg, args.checkpoint, device)
    augments, probs = batch_augments_of(model)
    if not augments:
        raise ValueError(
            f'config {args.config!r} has no batch augments (model.train_cfg.'
            'augments and model.data_preprocessor.batch_augments are empty); '
            'there is no mix to visualise.')
    loader = build_loader(cfg, args.split, args.batch_size, seed=args.seed)
    data = next(iter(loader))
    data = model.data_preprocessor(data, False)
    inputs = data['inputs']
    if inputs.shape[0] < 2:
        raise ValueError(f'the {args.split} dataloader gave a batch of '
                         f'{inputs.shape[0]}; at least 2 images are needed.')
    labels = batch_labels(data['data_samples']).to(inputs.device)
    num_classes = num_classes_of(model, loader)
    class_names = class_names_of(loader)
    os.makedirs(args.out, exist_ok=True)
    config_name = osp.splitext(osp.basename(args.config))[0]
    summary = dict(config=args.config,
                   checkpoint=args.checkpoint,
                   split=args.split,
                   seed=args.seed,
                   device=str(device),
                   probs=probs,
                   augments=[])
    from tqdm import tqdm
    for k, augment in enumerate(tqdm(augments, desc='augments', leave=False)):
        set_random_seed(args.seed + k)
        with torch.no_grad():
            view = describe_mix(augment, inputs, labels, num_classes, model)
        name = re.sub(r'[^A-Za-z0-9_.-]', '_', view.name)
        path = osp.join(args.out, f'mix_{k}_{name}.png')
        title = augment_repr(augment)
        if probs is not None:
            title += f'   (p = {probs[k]:.2f})'
        title = '\n'.join(textwrap.wrap(title, 90))
        plot_mix_grid(view, path, model.data_preprocessor, class_names,
                      args.num_samples, args.bgr, f'{config_name}\n{title}')
        rows = min(args.num_samples, inputs.shape[0])
        summary['augments'].append(
            dict(type=view.name,
                 repr=augment_repr(augment),
                 png=osp.basename(path),
                 estimated=view.estimated,
                 saliency=None if view.saliency is None else view.saliency_of,
                 has_mask=view.mask is not None,
                 partner=view.index[:rows].tolist(),
                 labels=view.labels[:rows].tolist(),
                 lam=None if view.lam is None else [
                     None if not torch.isfinite(v) else round(float(v), 4)
                     for v in view.lam[:rows]
                 ],
                 soft_labels=[
                     pair_weights_text(view.scores[i].cpu(),
                                       int(view.labels[i]),
                                       int(view.labels[view.index[i]]),
                                       class_names) for i in range(rows)
                 ]))
        print(f'{view.name}: {path}')
    atomic_write_text(
        json.dumps(summary, indent=2), osp.join(args.out, 'mix_summary.json'))
    return summary


if __name__ == '__main__':
    run_cli(main)
