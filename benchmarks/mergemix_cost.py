"""Training-step cost of MergeMix vs Mixup vs no mixing, side by side.

One command::

    # tiny ViT 32 px + DeiT-S 224 px
    python benchmarks/mergemix_cost.py
    # the same on CUDA (max_memory_allocated)
    python benchmarks/mergemix_cost.py --gpu

Variants (all share one model definition, AdamW, batch 16 by default):

* ``vanilla``: no batch augment.
* ``mixup``: mmpretrain Mixup (alpha 0.8).
* ``mergemix``: MergeMix without the auxiliary loss, classifying pass
  un-merged (``tome_in_mix=True``).
* ``mergemix-tome``: MergeMix without the auxiliary loss, classifying pass
  with the backbone's ToMe schedule (``tome_in_mix=False``, CIFAR semantics).
* ``mergemix-official``: the official CIFAR recipe: ``tome_in_mix=False`` and
  the auxiliary Mixup(0.8) loss (3 backbone passes; the two losses are
  back-propagated one after the other).

Time: ``--reps`` interleaved rounds (method order rotated) in one process,
after one warm-up step each; the ratio to Mixup is the median of the
per-round ratios. Peak memory on CPU: each variant
runs in its own subprocess with ``MALLOC_MMAP_THRESHOLD_`` fixed so that
freed tensors go back to the OS; the peak resident set (VmHWM, reset through
``/proc/self/clear_refs`` before the measured step) minus the resident set
before the step is the step's peak extra memory. On GPU,
``torch.cuda.max_memory_allocated`` of the step.
"""
import argparse
import copy
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(__file__))

VARIANTS = ['vanilla', 'mixup', 'mergemix', 'mergemix-tome',
            'mergemix-official']

SETTINGS = {
    'tiny32': dict(
        backbone=dict(
            type='ToMeVisionTransformer',
            arch=dict(embed_dims=96, num_layers=4, num_heads=4,
                      feedforward_channels=384),
            img_size=32, patch_size=4, drop_path_rate=0.1,
            out_type='cls_token'),
        embed=96, img=32, num_classes=10, merge_num=32, attn_layer=2),
    'deit-s224': dict(
        backbone=dict(
            type='ToMeVisionTransformer', arch='deit-small', img_size=224,
            patch_size=16, drop_path_rate=0.1, out_type='cls_token'),
        embed=384, img=224, num_classes=100, merge_num=98, attn_layer=8),
}


def build(setting: str, variant: str, device: str):
    import torch
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    import mergemix_mm  # noqa: F401
    init_default_scope('mmpretrain')
    s = SETTINGS[setting]
    backbone = copy.deepcopy(s['backbone'])
    kwargs = dict(tome_in_mix=True, aux_loss=None)
    augments = []
    if variant == 'mixup':
        augments = [dict(type='Mixup', alpha=0.8)]
    elif variant.startswith('mergemix'):
        augments = [dict(type='MergeMix', alpha=1.0,
                         attn_layer=s['attn_layer'],
                         merge_num=s['merge_num'])]
        if variant in ('mergemix-tome', 'mergemix-official'):
            backbone['merge_num'] = s['merge_num']
            kwargs['tome_in_mix'] = False
        if variant == 'mergemix-official':
            kwargs['aux_loss'] = 'mixup'
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='MergeMixClassifier', backbone=backbone,
        head=dict(type='MixLabelClsHead', num_classes=s['num_classes'],
                  in_channels=s['embed']),
        data_preprocessor=dict(num_classes=s['num_classes'],
                               mean=[127.5] * 3, std=[127.5] * 3),
        train_cfg=dict(augments=augments), **kwargs)).to(device)
    model.train()
    from mmengine.optim import OptimWrapper
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-4))
    return model, optim


def make_data(setting: str, batch: int, device: str):
    import torch
    from mmpretrain.structures import DataSample
    s = SETTINGS[setting]
    g = torch.Generator().manual_seed(0)
    return dict(
        inputs=[torch.randint(0, 256, (3, s['img'], s['img']), generator=g,
                              dtype=torch.uint8) for _ in range(batch)],
        data_samples=[DataSample().set_gt_label(i % s['num_classes'])
                      for i in range(batch)])


def _sync(device):
    import torch
    if device == 'cuda':
        torch.cuda.synchronize()


def _timed_preprocessor(model, log: list):
    """Record the wall time of every data-preprocessor call (which runs the
    batch augment, incl. MergeMix's mask pass) into ``log``."""
    start = {}

    def pre(module, args):
        start['t'] = time.perf_counter()

    def post(module, args, out):
        log.append(time.perf_counter() - start['t'])

    model.data_preprocessor.register_forward_pre_hook(pre)
    model.data_preprocessor.register_forward_hook(post)


def time_steps(setting: str, batch: int, reps: int, device: str,
               variants) -> dict:
    """Interleaved, rotated rounds of one ``train_step`` per variant.

    Returns:
        dict: variant -> ``step_s`` (per round), ``median_s``, ``min_s``,
        ``ratio`` (median over rounds of step / Mixup step of the same
        round; paired, so load drift between rounds cancels) and
        ``preprocess_s`` (median time of the data preprocessor incl. the
        batch augment).
    """
    import numpy as np
    import torch
    models = {v: build(setting, v, device) for v in variants}
    data = make_data(setting, batch, device)
    times = {v: [] for v in variants}
    pre_logs = {v: [] for v in variants}
    for v in variants:  # warm-up
        models[v][0].train_step(data, models[v][1])
        _timed_preprocessor(models[v][0], pre_logs[v])
    np.random.seed(0)
    for rep in range(reps):
        order = variants[rep % len(variants):] + variants[:rep % len(variants)]
        for v in order:
            model, optim = models[v]
            _sync(device)
            t0 = time.perf_counter()
            model.train_step(data, optim)
            _sync(device)
            times[v].append(time.perf_counter() - t0)
        print(f'  {setting} rep {rep + 1}/{reps}: ' + ', '.join(
            f'{v} {times[v][-1]:.3f}s' for v in variants), flush=True)
    del models
    torch.cuda.empty_cache() if device == 'cuda' else None
    ref = np.asarray(times['mixup']) if 'mixup' in times else None
    res = {}
    for v, t in times.items():
        t = np.asarray(t)
        res[v] = dict(
            step_s=t.tolist(),
            median_s=float(np.median(t)),
            min_s=float(t.min()),
            ratio=float(np.median(t / ref)) if ref is not None else None,
            preprocess_s=float(np.median(pre_logs[v])))
    return res


def _rss_kb(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def worker_memory(setting: str, variant: str, batch: int,
                  device: str) -> float:
    """Peak extra memory (MiB) of one training step."""
    import torch
    model, optim = build(setting, variant, device)
    data = make_data(setting, batch, device)
    model.train_step(data, optim)  # warm-up: optimizer state allocated
    if device == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        model.train_step(data, optim)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset VmHWM to the current RSS
    base = _rss_kb('VmRSS')
    model.train_step(data, optim)
    return (_rss_kb('VmHWM') - base) / 1024


def measure_memory(setting: str, variant: str, batch: int, device: str,
                   threads: int) -> float:
    """Peak extra memory (MiB) of one training step, on CPU in a fresh
    process with ``threads`` torch threads (as the timed steps)."""
    if device == 'cuda':
        return worker_memory(setting, variant, batch, device)
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536',
               MALLOC_TRIM_THRESHOLD_='0', PYTHONPATH=ROOT)
    out = subprocess.run(
        [sys.executable, __file__, '--worker', setting, variant,
         '--batch', str(batch), '--threads', str(threads)],
        capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])['peak_mib']


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options; bad settings, variants and counts exit with
    a one-line error naming the option."""
    from common import RESULTS, positive_int
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--settings', nargs='+', default=list(SETTINGS),
                        choices=list(SETTINGS))
    parser.add_argument('--variants', nargs='+', default=VARIANTS,
                        choices=VARIANTS)
    parser.add_argument('--batch', type=positive_int, default=16)
    parser.add_argument('--reps', type=positive_int, default=5)
    parser.add_argument('--threads', type=positive_int, default=2)
    parser.add_argument('--gpu', action='store_true')
    parser.add_argument('--out', default='mergemix_cost',
                        help='result file stem (_gpu is appended with --gpu)')
    parser.add_argument('--out-dir', default=RESULTS,
                        help='folder of the result files')
    parser.add_argument('--worker', nargs=2, metavar=('SETTING', 'VARIANT'),
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    device = 'cuda' if args.gpu else 'cpu'
    if args.gpu and not torch.cuda.is_available():
        raise SystemExit('--gpu given but no CUDA device is available')
    if args.worker:
        peak = worker_memory(*args.worker, args.batch, device)
        print(json.dumps(dict(peak_mib=peak)))
        return
    from common import env_markdown, environment, md_table, write_results
    env = environment(args.threads)
    start = time.perf_counter()
    results = {}
    for setting in args.settings:
        print(f'== {setting}: timing', flush=True)
        times = time_steps(setting, args.batch, args.reps, device,
                           list(args.variants))
        print(f'== {setting}: memory', flush=True)
        mem = {v: measure_memory(setting, v, args.batch, device,
                                 args.threads)
               for v in args.variants}
        results[setting] = dict(time_s=times, peak_mib=mem)
    wall = time.perf_counter() - start
    rows = []
    for setting, r in results.items():
        m_ref = r['peak_mib'].get('mixup')
        t_ref = r['time_s'].get('mixup')
        for v in args.variants:
            t, m = r['time_s'][v], r['peak_mib'][v]
            rows.append([
                setting, v, f"{t['median_s']:.3f}", f"{t['min_s']:.3f}",
                f"{t['ratio']:.2f}x" if t['ratio'] is not None else '-',
                f"{t['preprocess_s']:.3f}",
                f"{t['preprocess_s'] / t_ref['median_s']:.2f}"
                if t_ref else '-', f'{m:.0f}',
                f'{m / m_ref:.2f}x' if m_ref else '-'
            ])
    md = ['# MergeMix training-step cost (side by side, one run)', '',
          env_markdown(env), '',
          f'Batch {args.batch}, device {device}, {args.reps} interleaved '
          'rounds (variant order rotated). "step": median and minimum '
          'wall time of one `train_step`; "vs Mixup": median over rounds '
          'of (step / Mixup step of the same round). "preprocess": median '
          'time of the data preprocessor incl. the batch augment (for '
          "MergeMix: its no-grad ToMe mask pass), also as a share of the "
          'median Mixup step. Memory: peak extra memory of one step (see '
          'the script docstring for how it is measured).', '',
          md_table(['setting', 'variant', 'median step (s)',
                    'min step (s)', 'vs Mixup', 'preprocess (s)',
                    'preprocess / Mixup step', 'peak extra (MiB)',
                    'vs Mixup'], rows), '',
          f'Total wall time {wall / 60:.1f} min.']
    write_results(args.out + ('_gpu' if args.gpu else ''),
                  dict(environment=env, batch=args.batch, reps=args.reps,
                       device=device, results=results,
                       wall_time_s=wall), '\n'.join(md),
                  args.out_dir)
    print('\n'.join(md))


if __name__ == '__main__':
    main()
