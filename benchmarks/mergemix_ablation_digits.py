"""MergeMix ablation on the embedded digits: vanilla, Mixup, CutMix, MergeMix
default and ``compat='openmixup'``, each with and without ``lam_scale``.

One command (5 seeds)::

    python benchmarks/mergemix_ablation_digits.py --seeds 0 1 2 3 4 --epochs 15

Every variant trains the tiny ViT of
``configs/_base_/models/vit-tiny-p4_digits-32px.py`` on the 1,347 training
digits (32 px) with its config (listed in the result table) and reports top-1
on the 450 test digits after the last epoch, mean ± sample std over seeds.
The configs' warm-up + cosine schedule is compressed to ``--epochs``.
Nothing here is tuned per method: all variants share model, data, optimiser
and schedule; only the batch augment differs.
"""
import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

import common  # noqa: E402

ROOT = common.ROOT
VARIANTS = {
    'vanilla': 'configs/baselines/digits/vit-tiny_1xb64-vanilla_digits-32px.py',
    'mixup': 'configs/baselines/digits/vit-tiny_1xb64-mixup_digits-32px.py',
    'cutmix': 'configs/baselines/digits/vit-tiny_1xb64-cutmix_digits-32px.py',
    'mergemix (lam_scale)':
    'configs/mergemix/digits/vit-tiny_1xb64-mergemix_digits-32px.py',
    'mergemix (no lam_scale)':
    'configs/mergemix/digits/vit-tiny_1xb64-mergemix-noscale_digits-32px.py',
    'mergemix openmixup (lam_scale)':
    'configs/mergemix/digits/vit-tiny_1xb64-mergemix-openmixup_digits-32px.py',
    'mergemix openmixup (no lam_scale)':
    'configs/mergemix/digits/'
    'vit-tiny_1xb64-mergemix-openmixup-noscale_digits-32px.py',
}


def train_and_evaluate_config(config: str, seed: int, epochs: int) -> dict:
    """Train the model of ``config`` for ``epochs`` with ``seed``; return
    the test top-1 and timings."""
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.runner import set_random_seed
    from accuracy_digits import _loaders, _schedulers
    cfg = Config.fromfile(osp.join(ROOT, config))
    set_random_seed(seed)
    model = common.build_model(cfg)
    train, test = _loaders(cfg, seed)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    schedulers = _schedulers(cfg, optim_wrapper, epochs, len(train))
    model.train()
    steps, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        for data in train:
            model.train_step(data, optim_wrapper)
            for s in schedulers:
                s.step()
            steps += 1
    train_time = time.perf_counter() - t0
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for data in test:
            for ds in model.val_step(data):
                correct += int(ds.pred_label.item() == ds.gt_label.item())
                total += 1
    return dict(accuracy=100.0 * correct / total, train_time_s=train_time,
                steps=steps, step_time_s=train_time / steps)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2, 3, 4])
    parser.add_argument('--epochs', type=int, default=15)
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS))
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--name', default='mergemix_ablation_digits')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import mergemix_mm  # noqa: F401
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmengine', log_level='WARNING')
    env = common.environment(args.threads)
    runs = {v: {} for v in args.variants}
    jobs = [(s, v) for s in args.seeds for v in args.variants]
    t_start = time.perf_counter()
    for seed, variant in tqdm(jobs, desc='digits ablation'):
        res = train_and_evaluate_config(VARIANTS[variant], seed, args.epochs)
        runs[variant][str(seed)] = res
        tqdm.write(f'{variant:34s} seed {seed}: {res["accuracy"]:.2f}%')
    wall = time.perf_counter() - t_start
    rows, summary = [], {}
    for v in args.variants:
        accs = np.array([r['accuracy'] for r in runs[v].values()])
        summary[v] = dict(mean=float(accs.mean()),
                          std=float(accs.std(ddof=1)) if len(accs) > 1 else 0.0)
        rows.append([v, f"{summary[v]['mean']:.2f} ± {summary[v]['std']:.2f}",
                     ', '.join(f'{a:.1f}' for a in accs),
                     f'[config]({osp.relpath(osp.join(ROOT, VARIANTS[v]), common.RESULTS)})'])
    md = ['# MergeMix ablation on the embedded digits (tiny ViT, 32 px)', '',
          f'{len(args.seeds)} seeds ({", ".join(map(str, args.seeds))}), '
          f'{args.epochs} epochs, batch 64, top-1 (%) on the 450 test digits '
          f'after the last epoch, mean ± sample std. Wall time {wall / 60:.1f} '
          'min.', '',
          common.md_table(['variant', 'top-1 (%)', 'per seed', 'config'], rows),
          '', '## Run', '', common.env_markdown(env)]
    common.write_results(args.name, dict(
        benchmark=args.name, epochs=args.epochs, seeds=args.seeds,
        configs=VARIANTS, environment=env, wall_time_s=wall, runs=runs,
        summary=summary), '\n'.join(md))


if __name__ == '__main__':
    main()
