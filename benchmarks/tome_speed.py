"""Benchmark: DeiT-S inference throughput with ToMe merging vs no merging.

Runs ``tools/analysis/benchmark_speed.py`` (settings interleaved in one
process) for no merging, MergeMix ``merge_num`` 49 and 98 and ToMe ``r=8``
per block, adds the analytic FLOPs of each setting
(``tools/analysis/get_flops.py``) and writes
``benchmarks/results/tome_speed.{md,json}``.

Usage::

    python benchmarks/tome_speed.py                 # 2 threads, both backends
    python benchmarks/tome_speed.py --threads 2 1 --repeats 10

With ``--threads 2 1`` a single-thread table follows the 2-thread one: when
other processes compete for the cores, multi-threaded timings are dominated
by thread synchronisation stalls, while single-thread ratios stay close to
the compute ratios.

Optional ``--malloc-tune`` raises glibc's mmap / trim thresholds (via
``mallopt``) before the run. Merged blocks allocate tensors of a different
size at every block, which with the default glibc settings costs extra page
faults; the option shows how much of the gap is the allocator.
"""
import argparse
import ctypes
import importlib.util
import json
import os
import os.path as osp
import sys

import torch

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, ROOT)


def _load_tool(name):
    path = osp.join(ROOT, 'tools', 'analysis', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'_tool_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _malloc_tune() -> bool:
    """Keep freed memory in the heap instead of returning it to the OS."""
    try:
        libc = ctypes.CDLL('libc.so.6')
    except OSError:
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    ok = libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)
    ok &= libc.mallopt(m_trim_threshold, 1024 * 1024 * 1024)
    ok &= libc.mallopt(m_top_pad, 256 * 1024 * 1024)
    return bool(ok)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='deit-small')
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument(
        '--threads',
        type=int,
        nargs='+',
        default=[2],
        help='intra-op thread counts to run, one table each')
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument(
        '--settings', nargs='+', default=['none', 'merge49', 'merge98', 'r8'])
    parser.add_argument(
        '--backends',
        nargs='+',
        default=['mmpretrain', 'timm'],
        choices=['mmpretrain', 'timm'])
    parser.add_argument('--malloc-tune', action='store_true')
    parser.add_argument(
        '--out-dir', default=osp.join(ROOT, 'benchmarks', 'results'))
    parser.add_argument('--name', default='tome_speed')
    args = parser.parse_args()

    tuned = _malloc_tune() if args.malloc_tune else False
    torch.set_num_threads(args.threads[0])
    torch.manual_seed(0)
    bench = _load_tool('benchmark_speed')
    flops_tool = _load_tool('get_flops')
    from mergemix_mm.models.tome import vit_geometry

    command = 'python ' + ' '.join([osp.relpath(sys.argv[0], ROOT)] +
                                   sys.argv[1:])
    env = bench.environment_info()
    env['malloc_tune'] = tuned
    env.pop('torch_threads', None)
    sections, payload = [], dict(command=command, env=env, backends={})

    flop_model = flops_tool.build_from_args(None, args.arch, 224)
    num_layers = vit_geometry(flop_model).num_layers
    flops = {}
    for s in args.settings:
        res = flops_tool.count_flops(flop_model,
                                     bench.parse_setting(s, num_layers), 224)
        flops[s] = dict(
            gflops_linear_conv=res['linear_conv'] / 1e9,
            gflops_with_attention=res['total'] / 1e9,
            tokens=res['tokens'])
    payload['flops'] = flops

    runs = [(b, t) for t in args.threads for b in args.backends]
    for backend, threads in runs:
        torch.set_num_threads(threads)
        model = bench.build_model(args.arch, 224, backend)
        results = bench.run_benchmark(model, args.settings, args.batch_size,
                                      224, args.repeats, args.warmup)
        overhead = bench.measure_merge_overhead(
            model,
            args.settings,
            args.batch_size,
            224,
            repeats=max(2, args.repeats // 3))
        for s, o in overhead.items():
            results[s]['merge_overhead'] = o
        key = f'{backend}/threads{threads}'
        payload['backends'][key] = results
        if hasattr(os, 'getloadavg'):
            env[f'loadavg_after_{key}'] = [
                round(v, 2) for v in os.getloadavg()
            ]
        base = args.settings[0]
        lines = [
            f'## {backend} backend, {threads} thread(s)', '',
            '| setting | r per block | tokens out | GFLOPs Lin/Conv | '
            'GFLOPs +attn | median s / batch | images / s | '
            f'speed-up vs {base} | CPU-time speed-up | FLOP ratio (+attn) '
            '| merge share |',
            '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- '
            '| --- |'
        ]
        for s, r in results.items():
            f = flops[s]
            o = r.get('merge_overhead')
            share = f"{100 * o['fraction']:.1f}%" if o else '-'
            ratio = (
                flops[base]['gflops_with_attention'] /
                f['gflops_with_attention'])
            lines.append(
                f"| {s} | {','.join(map(str, r['r_list']))} | "
                f"{f['tokens'][-1]} | {f['gflops_linear_conv']:.2f} | "
                f"{f['gflops_with_attention']:.2f} | {r['median_s']:.4f} | "
                f"{r['images_per_s']:.1f} | **{r['speedup']:.3f}x** | "
                f"{r['cpu_speedup']:.3f}x | {ratio:.3f}x | {share} |")
        sections.append('\n'.join(lines))

    notes = []
    loads = [v[0] for k, v in env.items() if k.startswith('loadavg')]
    if loads and env.get('cpu_count') and max(loads) > env['cpu_count']:
        notes = [
            f'**Note:** the machine was oversubscribed during this run '
            f'(1-min load average up to {max(loads):.1f} on '
            f"{env['cpu_count']} cores, other jobs running). Multi-thread "
            'timings are then dominated by thread-synchronisation stalls, '
            'which penalise the merged forwards (more, smaller parallel '
            'ops); single-thread ratios are the more reliable ones.', ''
        ]
    md = '\n'.join([
        f'# ToMe inference throughput: {args.arch}, batch '
        f'{args.batch_size}, 224 px, CPU', '', f'Command: `{command}`', '',
        f'{args.repeats} timed rounds after {args.warmup} warm-up rounds; '
        'in every round each setting runs once (rotating order), in the '
        'same process on the same randomly initialised weights; the table '
        "shows medians of wall-clock time (speed-up) and of the process CPU "
        'time of all threads (CPU-time speed-up; less sensitive to other '
        "processes competing for the cores). 'none' is the stock forward "
        '(merging off). FLOPs '
        'per image from tools/analysis/get_flops.py (1 MAC = 1 FLOP). '
        "'merge share': fraction of the forward time spent in the merging "
        'step (matching, weighted merge, source map), timed in separate '
        'instrumented forwards.', '', *notes,
        *[s + '\n' for s in sections],
        'Environment: ' + ', '.join(f'{k}={v}' for k, v in env.items()), ''
    ])
    print(md)
    os.makedirs(args.out_dir, exist_ok=True)
    with open(osp.join(args.out_dir, f'{args.name}.md'), 'w') as f:
        f.write(md)
    with open(osp.join(args.out_dir, f'{args.name}.json'), 'w') as f:
        json.dump(payload, f, indent=2)


if __name__ == '__main__':
    main()
