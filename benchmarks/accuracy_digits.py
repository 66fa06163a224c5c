"""Accuracy benchmark: every method on the embedded UCI digits, 5 seeds.

Each method trains the tiny ViT of ``configs/_base_/models/vit-tiny-p4_digits-
32px.py`` (patch 4, 4 blocks, width 96) with its recipe from
``configs/baselines/digits/`` (MergeMix: ``configs/demo/vit-tiny_1xb64-
mergemix_digits-32px.py``) on the 1,347 training digits at 32 px and reports
the top-1 accuracy on the 450 test digits after the last epoch, as mean ±
sample std over seeds. The schedule is the config's AdamW + warm-up + cosine,
compressed to ``--epochs`` (fewer than the demo's 30, to fit the CPU budget).
Training uses the model's own ``train_step`` (data preprocessor, batch
augments, classifier re-scoring, optimizer wrapper), in a lean loop instead
of the mmengine Runner to save its per-run start-up cost.

The same run holds the MergeMix ablation (``MERGEMIX_VARIANTS``, configs in
``configs/mergemix/digits/``): the paper-intent attention handling and
``compat='openmixup'``, each with and without ``lam_scale``, next to
vanilla, Mixup and CutMix. Nothing is tuned per method: all share model,
data, optimiser and schedule; only the batch augment differs.

Runs go to ``--workers`` processes of ``--threads`` torch threads each (2 x 1
on 2 cores: a single 2-thread process slows down several-fold as soon as
another process competes for the cores).

Command (all methods and variants; 54 min wall on 2 cores here, of which
the four MergeMix variants took about 12; ``--no-ablation`` leaves them
out)::

    python benchmarks/accuracy_digits.py --seeds 0 1 2 3 4 --epochs 10

Only the MergeMix ablation::

    python benchmarks/accuracy_digits.py --methods vanilla mixup cutmix \
        mergemix mergemix-lamscale mergemix-openmixup \
        mergemix-openmixup-lamscale --name mergemix_ablation
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

import common  # noqa: E402

#: MergeMix ablation variants (name -> (label, config)); 'mergemix' itself is
#: the demo recipe: paper-intent attention, no label re-scaling.
MERGEMIX_VARIANTS = {
    'mergemix-lamscale':
    ('MergeMix, lam_scale',
     'configs/mergemix/digits/vit-tiny_1xb64-mergemix_digits-32px.py'),
    'mergemix-openmixup':
    ('MergeMix, compat=openmixup',
     'configs/mergemix/digits/'
     'vit-tiny_1xb64-mergemix-openmixup-noscale_digits-32px.py'),
    'mergemix-openmixup-lamscale':
    ('MergeMix, compat=openmixup, lam_scale',
     'configs/mergemix/digits/'
     'vit-tiny_1xb64-mergemix-openmixup_digits-32px.py'),
    'mergemix-auxmixup':
    ('MergeMix + aux Mixup loss (official recipe)',
     'configs/mergemix/digits/'
     'vit-tiny_1xb64-mergemix-auxmixup_digits-32px.py'),
}
#: Rows of the ablation table.
ABLATION = ['vanilla', 'mixup', 'cutmix', 'mergemix'] + list(MERGEMIX_VARIANTS)


def select(names=None) -> list:
    """Methods and MergeMix variants to run (all when ``names`` is None)."""
    if names is None:
        methods = common.select_methods(None)
        return methods + (list(MERGEMIX_VARIANTS)
                          if 'mergemix' in methods else [])
    unknown = [
        n for n in names if n not in common.METHODS
        and n not in MERGEMIX_VARIANTS
    ]
    if unknown:
        raise ValueError(f'unknown method(s) {unknown}; choose from '
                         f'{list(common.METHODS) + list(MERGEMIX_VARIANTS)}')
    base = [n for n in names if n in common.METHODS]
    base = common.select_methods(base) if base else []
    return base + [n for n in MERGEMIX_VARIANTS if n in names]


def label(method: str) -> str:
    """Table label of a method or variant."""
    if method in MERGEMIX_VARIANTS:
        return MERGEMIX_VARIANTS[method][0]
    return common.METHODS[method]


def config_file(method: str) -> str:
    """Config (absolute path) a method or variant trains with."""
    if method in MERGEMIX_VARIANTS:
        return osp.join(common.ROOT, MERGEMIX_VARIANTS[method][1])
    return common.config_path(method, 'digits')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--seeds', type=common.non_negative_int, nargs='+',
        default=[0, 1, 2, 3, 4])
    parser.add_argument('--epochs', type=common.positive_int, default=10)
    parser.add_argument('--methods', nargs='+', default=None,
                        help='subset of '
                        f'{list(common.METHODS) + list(MERGEMIX_VARIANTS)}')
    parser.add_argument('--no-ablation', action='store_true',
                        help='leave out the MergeMix ablation variants '
                        f'{list(MERGEMIX_VARIANTS)} (about a quarter of the '
                        'runs)')
    parser.add_argument('--workers', type=common.positive_int, default=2,
                        help='parallel training processes (one per core)')
    parser.add_argument('--threads', type=common.positive_int, default=1,
                        help='torch threads per process')
    parser.add_argument('--out', default=common.RESULTS,
                        help='output folder for accuracy.json / .md')
    parser.add_argument('--name', default='accuracy',
                        help='result file stem')
    parser.add_argument('--resume', action='store_true',
                        help='reuse the finished runs saved in '
                        '<out>/<name>.partial.json (written after every run)')
    args = parser.parse_args(argv)
    if len(set(args.seeds)) < len(args.seeds):
        parser.error(f'--seeds {args.seeds} repeats a seed')
    return args


def _loaders(cfg, seed: int):
    from mmengine.dataset import pseudo_collate
    from mmpretrain.registry import DATASETS
    from torch.utils.data import DataLoader
    train_set = DATASETS.build(cfg.train_dataloader.dataset)
    test_set = DATASETS.build(cfg.val_dataloader.dataset)
    g = torch.Generator().manual_seed(seed)
    train = DataLoader(train_set, batch_size=cfg.train_dataloader.batch_size,
                       shuffle=True, generator=g, collate_fn=pseudo_collate)
    test = DataLoader(test_set, batch_size=150, shuffle=False,
                      collate_fn=pseudo_collate)
    return train, test


def _schedulers(cfg, optim_wrapper, epochs: int, iters_per_epoch: int):
    """The config's warm-up + cosine, compressed to ``epochs``."""
    from mmengine.registry import PARAM_SCHEDULERS
    warm = min(max(1, round(epochs * 2 / 30)), epochs)
    schedulers = []
    for s in cfg.param_scheduler:
        s = dict(s)
        if s['type'] == 'LinearLR':
            s.update(begin=0, end=warm)
        elif warm >= epochs:
            continue
        else:
            s.update(begin=warm, end=epochs)
        schedulers.append(
            PARAM_SCHEDULERS.build(
                s,
                default_args=dict(
                    optimizer=optim_wrapper, epoch_length=iters_per_epoch)))
    return schedulers


def train_and_evaluate(config: str, seed: int, epochs: int) -> dict:
    """Train the model of ``config`` with one seed for ``epochs``; return
    the test top-1 and timings."""
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.runner import set_random_seed
    cfg = Config.fromfile(config)
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
    return dict(
        accuracy=100.0 * correct / total,
        train_time_s=train_time,
        steps=steps,
        step_time_s=train_time / steps)


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)
    import mergemix_mm  # noqa: F401
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmengine', log_level='WARNING')


def _job(job):
    seed, method, epochs = job
    return seed, method, train_and_evaluate(config_file(method), seed,
                                            epochs)


def main(argv=None):
    args = parse_args(argv)
    _init_worker(args.threads)
    try:
        methods = select(args.methods)
    except ValueError as err:
        raise SystemExit(f'--methods: {err}') from None
    if args.no_ablation:
        methods = [m for m in methods if m not in MERGEMIX_VARIANTS]
    env = common.environment(args.threads)
    env['workers'] = args.workers
    runs = {m: {} for m in methods}
    partial = osp.join(args.out, f'{args.name}.partial.json')
    if args.resume and osp.exists(partial):
        with open(partial) as f:
            saved = json.load(f)
        if saved['epochs'] != args.epochs:
            raise SystemExit(f'{partial} holds {saved["epochs"]}-epoch runs, '
                             f'not {args.epochs}')
        wanted = {str(s) for s in args.seeds}
        for m, by_seed in saved['runs'].items():
            if m in runs:  # only the seeds asked for enter the summary
                runs[m].update(
                    {s: r for s, r in by_seed.items() if s in wanted})
                other = sorted(set(by_seed) - wanted, key=int)
                if other:
                    print(f'{partial}: ignoring {m} seeds {other} '
                          '(not in --seeds)')
    jobs = [(s, m, args.epochs) for s in args.seeds for m in methods
            if str(s) not in runs[m]]
    print(f'{len(jobs)} runs to do')
    t_start = time.perf_counter()
    if args.workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor
        pool = ProcessPoolExecutor(
            args.workers, mp_context=mp.get_context('spawn'),
            initializer=_init_worker, initargs=(args.threads, ))
        results = pool.map(_job, jobs)
    else:
        pool, results = None, map(_job, jobs)
    for seed, method, res in tqdm(results, total=len(jobs),
                                  desc='digits runs'):
        runs[method][str(seed)] = res
        tqdm.write(f'{method:22s} seed {seed}: {res["accuracy"]:.2f}% '
                   f'({res["train_time_s"]:.1f} s)')
        os.makedirs(args.out, exist_ok=True)
        common.write_json(partial, dict(epochs=args.epochs, runs=runs),
                          indent=1)
    if pool is not None:
        pool.shutdown()
    wall = time.perf_counter() - t_start
    run_sum = sum(r['train_time_s'] for by_seed in runs.values()
                  for r in by_seed.values())

    summary = {}
    for m in methods:
        accs = np.array([r['accuracy'] for r in runs[m].values()])
        summary[m] = dict(
            mean=float(accs.mean()),
            std=float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
            min=float(accs.min()),
            max=float(accs.max()),
            step_time_s=float(
                np.mean([r['step_time_s'] for r in runs[m].values()])))
    payload = dict(
        benchmark='accuracy_digits',
        config=dict(
            epochs=args.epochs,
            seeds=args.seeds,
            methods=methods,
            model='configs/_base_/models/vit-tiny-p4_digits-32px.py',
            data='DigitsDataset 1,347 train / 450 test, 32 px',
            batch_size=64,
            metric='top-1 after the last epoch (%)'),
        environment=env,
        wall_time_s=wall,
        train_time_sum_s=run_sum,
        resumed=bool(args.resume),
        runs=runs,
        summary=summary)

    ref = summary.get('mixup', {}).get('mean')

    def row(m):
        s = summary[m]
        seeds = ', '.join(f"{runs[m][str(k)]['accuracy']:.1f}"
                          for k in args.seeds if str(k) in runs[m])
        delta = '' if ref is None else f"{s['mean'] - ref:+.2f}"
        link = osp.relpath(config_file(m), osp.abspath(args.out))
        return [
            label(m), f"{s['mean']:.2f} ± {s['std']:.2f}", delta, seeds,
            f"{1000 * s['step_time_s']:.0f}", f'[config]({link})'
        ]

    header = [
        'method', 'top-1 (%)', 'vs Mixup', 'per seed', 'mean step (ms)',
        'config'
    ]
    md = [
        '# Accuracy on the embedded digits (tiny ViT, 32 px)', '',
        f'{len(args.seeds)} seeds ({", ".join(map(str, args.seeds))}), '
        f'{args.epochs} epochs, batch 64, each method with its recipe from '
        '`configs/baselines/digits/` (MergeMix: '
        '`configs/demo/vit-tiny_1xb64-mergemix_digits-32px.py`; its '
        'ablation variants: `configs/mergemix/digits/`). Top-1 on '
        'the 450 test digits after the last epoch, mean ± sample std. '
        f'Wall time {wall / 60:.1f} min ({args.workers} processes x '
        f'{args.threads} thread(s)); sum of training times '
        f'{run_sum / 60:.1f} min. Step times here come from '
        'parallel, non-interleaved runs: use `cost.md` for cost ratios.', '',
        common.md_table(header, [row(m) for m in methods])
    ]
    ablation = [m for m in ABLATION if m in methods]
    if any(m in MERGEMIX_VARIANTS for m in ablation):
        md += [
            '', '## MergeMix ablation', '',
            "'MergeMix' is the paper-intent attention handling (CLS row, "
            'head mean, source map of the tokens entering the block) with '
            'the label = kept pixel fraction; `compat=openmixup` is the '
            "official classification code's handling (token->CLS column, "
            'summed heads, final source map); `lam_scale` is the official '
            're-scaling of the label weight (ALGORITHM.md §4.5); "aux Mixup '
            'loss" adds the official recipe\'s second loss, Mixup(0.8) on '
            'another mixed copy (§10 A4). Same runs as the table above.', '',
            common.md_table(header, [row(m) for m in ablation])
        ]
    md += ['', '## Run', '', common.env_markdown(env)]
    common.write_results(args.name, payload, '\n'.join(md), args.out)
    if osp.exists(partial):
        os.remove(partial)
    if args.name == 'accuracy':
        common.plot_accuracy_vs_cost(args.out)


if __name__ == '__main__':
    main()
