"""Cost benchmark: training-step time and peak memory of every method against
Mixup, side by side in one run.

Settings:

* ``deit-s-224``: DeiT-S/16 at 224 px, batch 16, 100 classes (the CIFAR-100
  model config of ``configs/baselines/cifar100/``);
* ``vit-tiny-32``: the digits tiny ViT at 32 px, batch 64, 10 classes;
* ``--gpu``: DeiT-S/16 at 224 px, batch 100 (the CIFAR recipe's shapes) on
  CUDA.

One model per setting is built once; every method's batch augments are
swapped into it (model-aware augments are bound to it; MergeMix, whose
config also changes the model - ToMe schedule, ``tome_in_mix``, auxiliary
Mixup loss - gets its own model from its config), and the methods are timed
*interleaved*: round ``r`` runs one full ``train_step`` (data
preprocessor with the batch augment, classifier forward/re-scoring, backward,
AdamW step) for every method in turn, so load drift on a shared machine hits
all methods alike. Each method runs alone (probability 1; DeiT = its 50/50
Mixup/CutMix pair), so the numbers are the cost of a step where the method
is applied. Reported: median step time, its ratio to Mixup's median, and the
median time spent in the data preprocessor (batch augment included).

Peak memory on CPU: after the timing, one more step per method runs under
``torch.profiler`` with ``profile_memory=True``; the running sum of its
tensor allocation/free events gives the peak tensor memory the step adds on
top of what existed before it (activations, gradients, temporaries of the
augment and of forward/backward; not Python objects or allocator caches),
see :func:`profile_peak_bytes`. Process RSS is not used: it is dominated by
one-time library and allocator effects and came out identical for every
method.
With ``--gpu`` it is ``torch.cuda.max_memory_allocated`` during the
method's timed steps (reset before each step).

Command (about 12 minutes on 2 CPU cores)::

    python benchmarks/cost.py
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

SETTINGS = {
    'deit-s-224': dict(family='deit-s', img_size=224, batch_size=16,
                       num_classes=100, iters=4, warmup=1),
    'vit-tiny-32': dict(family='digits', img_size=32, batch_size=64,
                        num_classes=10, iters=10, warmup=2),
}
GPU_SETTING = dict(family='deit-s', img_size=224, batch_size=100,
                   num_classes=100, iters=10, warmup=3)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--methods', nargs='+', default=None)
    parser.add_argument('--settings', nargs='+', default=list(SETTINGS),
                        choices=list(SETTINGS))
    parser.add_argument('--iters', type=common.positive_int, default=None,
                        help='timed rounds per setting (default per setting:'
                        ' 4 for DeiT-S, 10 for the tiny ViT)')
    parser.add_argument('--threads', type=common.positive_int, default=2)
    parser.add_argument('--no-memory', action='store_true',
                        help='skip the profiled memory step')
    parser.add_argument('--gpu', action='store_true',
                        help='CIFAR-shaped DeiT-S run on CUDA instead')
    parser.add_argument('--out', default=common.RESULTS)
    parser.add_argument(
        '--name', default=None,
        help="result file stem (default 'cost', 'cost_gpu' with --gpu, so a "
        'GPU run does not replace the CPU results)')
    args = parser.parse_args(argv)
    if args.name is None:
        args.name = 'cost_gpu' if args.gpu else 'cost'
    return args


def _setup(setting: dict, device: str, method: str = 'vanilla'):
    """Model (of ``method``'s config), optimizer and one fixed batch."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.runner import set_random_seed
    set_random_seed(0)
    cfg = common.load_config(method, setting['family'])
    model = common.build_model(cfg, device=device)
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    data = common.fake_batch(setting['batch_size'], setting['img_size'],
                             setting['num_classes'], seed=0)
    model.train()
    return model, optim, data


def _method_cfg(method: str, family: str) -> dict:
    return common.pure_train_cfg(method, common.load_config(method, family))


def profile_peak_bytes(model, optim, data) -> int:
    """Peak growth of PyTorch's CPU tensor memory during one training step.

    The step runs under ``torch.profiler`` with ``profile_memory=True``; its
    allocation and free events (signed byte counts) are summed in time
    order and the maximum of that running sum is returned: the largest
    amount of tensor memory the step held on top of what existed before it
    (activations, gradients, optimizer state created by the step,
    temporaries of the batch augment and of the forward/backward).
    """
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU],
                 profile_memory=True) as prof:
        model.train_step(data, optim)
    events = [
        e for e in prof.profiler.kineto_results.events()
        if e.name() == '[memory]'
    ]
    events.sort(key=lambda e: e.start_ns())
    current = peak = 0
    for e in events:
        current += e.nbytes()
        peak = max(peak, current)
    return int(peak)


def time_setting(name: str, setting: dict, methods, iters: int,
                 device: str, memory: bool = False) -> dict:
    """Interleaved step timing of every method (then, with ``memory``, one
    profiled step per method). Methods share one model, except those whose
    config changes the model (:func:`common.own_model`)."""
    shared = _setup(setting, device)
    runners = {
        m: _setup(setting, device, m) if common.own_model(m) else shared
        for m in methods
    }
    method_cfgs = {m: _method_cfg(m, setting['family']) for m in methods}
    prep = []
    patched = []
    for model, _, _ in {id(r[0]): r for r in runners.values()}.values():
        dp = model.data_preprocessor
        orig_forward = dp.forward

        def timed_forward(*args, _orig=orig_forward, **kwargs):
            _sync(device)
            t = time.perf_counter()
            out = _orig(*args, **kwargs)
            _sync(device)
            prep.append(time.perf_counter() - t)
            return out

        dp.forward = timed_forward
        patched.append(dp)
    steps = {m: [] for m in methods}
    preps = {m: [] for m in methods}
    mems = {m: [] for m in methods}
    total = (setting['warmup'] + iters) * len(methods)
    bar = tqdm(total=total, desc=name)
    for r in range(setting['warmup'] + iters):
        # rotate the order every round, so no method always runs first
        shift = r % len(methods)
        for m in methods[shift:] + methods[:shift]:
            model, optim, data = runners[m]
            common.set_batch_augments(model, method_cfgs[m])
            if device == 'cuda':
                torch.cuda.reset_peak_memory_stats()
            prep.clear()
            _sync(device)
            t = time.perf_counter()
            model.train_step(data, optim)
            _sync(device)
            dt = time.perf_counter() - t
            if r >= setting['warmup']:
                steps[m].append(dt)
                preps[m].append(sum(prep))
                if device == 'cuda':
                    mems[m].append(torch.cuda.max_memory_allocated())
            bar.update()
    bar.close()
    for dp in patched:
        del dp.forward  # back to the class method
    if memory:
        for m in tqdm(methods, desc=f'{name} memory'):
            model, optim, data = runners[m]
            common.set_batch_augments(model, method_cfgs[m])
            mems[m].append(profile_peak_bytes(model, optim, data))
    ref = np.asarray(steps['mixup']) if 'mixup' in steps else None
    res = {}
    for m in methods:
        t = np.asarray(steps[m])
        res[m] = dict(
            step_s=steps[m],
            median_step_s=float(np.median(t)),
            min_step_s=float(t.min()),
            # rounds are paired in time: the median of per-round ratios
            # cancels load drift on a shared machine
            ratio_vs_mixup=float(np.median(t / ref))
            if ref is not None else None,
            median_preprocess_s=float(np.median(preps[m])))
        if mems[m]:
            res[m]['peak_memory_bytes'] = int(max(mems[m]))
    return res


def _sync(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    import mergemix_mm  # noqa: F401
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmengine', log_level='WARNING')
    try:
        methods = common.select_methods(args.methods)
    except ValueError as err:
        raise SystemExit(f'--methods: {err}') from None
    if 'mixup' not in methods:
        methods = ['mixup'] + methods
    device = 'cuda' if args.gpu else 'cpu'
    if args.gpu and not torch.cuda.is_available():
        raise SystemExit('--gpu: no CUDA device is available')
    settings = {'deit-s-224-gpu': GPU_SETTING} if args.gpu else {
        k: SETTINGS[k] for k in args.settings
    }
    env = common.environment(args.threads)
    t0 = time.perf_counter()
    out = {}
    for name, setting in settings.items():
        iters = args.iters or setting['iters']
        res = time_setting(name, setting, methods, iters, device,
                           memory=not (args.gpu or args.no_memory))
        out[name] = dict(setting=dict(setting, iters=iters), methods=res)
    wall = time.perf_counter() - t0

    payload = dict(benchmark='cost', device=device, environment=env,
                   wall_time_s=wall, settings=out)
    md = ['# Training-step cost vs Mixup', '',
          'Interleaved rounds of one full `train_step` per method on one '
          'shared model per setting (methods alone, probability 1). Step '
          'times: median and minimum over the timed rounds; "vs Mixup" = '
          'median over rounds of (method step / Mixup step in the same '
          'round). '
          '"preprocess" is the data preprocessor incl. the batch augment '
          '(and the attention pass of model-aware augments). Memory: '
          + ('`torch.cuda.max_memory_allocated` during the step.'
             if args.gpu else
             'peak tensor memory added during one extra step profiled with '
             '`torch.profiler(profile_memory=True)` after the timing '
             '(activations, gradients, temporaries of augment and forward/'
             'backward); ratio to Mixup in brackets.'),
          '', f'Total wall time {wall / 60:.1f} min.']
    for name, block in out.items():
        s = block['setting']
        md += ['', f'## {name}: {s["family"]}, {s["img_size"]} px, batch '
               f'{s["batch_size"]}, {s["iters"]} timed rounds after '
               f'{s["warmup"]} warm-up', '']
        res = block['methods']
        mem_key = 'peak_memory_bytes'
        ref_mem = res.get('mixup', {}).get(mem_key)
        rows = []
        for m in methods:
            r = res[m]
            mem = r.get(mem_key)
            mem_s = '-' if mem is None else f'{mem / 2**20:.0f} MiB' + (
                f' ({mem / ref_mem:.2f}x)' if ref_mem else '')
            rows.append([
                common.METHODS[m], f"{1000 * r['median_step_s']:.0f}",
                f"{1000 * r['min_step_s']:.0f}",
                f"{r['ratio_vs_mixup']:.2f}x",
                f"{1000 * r['median_preprocess_s']:.1f}", mem_s
            ])
        md.append(common.md_table([
            'method', 'median step (ms)', 'min step (ms)', 'vs Mixup',
            'preprocess (ms)', 'peak memory'
        ], rows))
    md += ['', '## Run', '', common.env_markdown(env)]
    common.write_results(args.name, payload, '\n'.join(md), args.out)
    if args.name == 'cost':
        common.plot_accuracy_vs_cost(args.out)


if __name__ == '__main__':
    main()
