"""Benchmark: DeiT-S inference throughput with ToMe merging vs no merging.

Runs ``tools/analysis/benchmark_speed.py`` (settings interleaved in one
process) for no merging, MergeMix ``merge_num`` 49 and 98 and ToMe ``r=8``
per block, adds the analytic FLOPs of each setting
(``tools/analysis/get_flops.py``) and writes
``benchmarks/results/tome_speed.{md,json}``.

Usage::

    python benchmarks/tome_speed.py                       # 1 process
    python benchmarks/tome_speed.py --processes 5 --allocators default tuned

Every measurement runs in a fresh Python process (``--processes`` of them
per allocator setting, interleaved), because on a small VM the un-merged
forward's time depends on the process: glibc's allocator returns the large
activation buffers to the OS or not depending on the heap layout, and when
it does, every forward pays for fresh pages (minor page faults, kernel
time). The tables report the median over processes and the range, and the
page faults per forward so the effect is visible.

``--allocators tuned`` raises glibc's mmap / trim thresholds (via
``mallopt``) at the start of the process so that freed memory stays in the
heap: no setting pays for page faults and the ratios show compute alone.
``--threads 2 1`` adds a single-thread table per backend.
"""
import argparse
import ctypes
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import common  # noqa: E402

ALLOCATORS = ('default', 'tuned')
#: Suffix of the settings timed in the textbook formulation.
TEXTBOOK = '@textbook'
#: Suffix of the settings timed with tokens dropped instead of merged.
DROP = '@drop'
#: Suffix of the settings timed with the reference ToMe (facebookresearch).
REFERENCE = '@reference'
#: Suffix of the settings timed as torch.compile'd forwards.
COMPILED = '@compiled'
#: Yardsticks that are whole other forwards: their rows are also given
#: against their own forward without merging (``none<suffix>``).
OWN_BASELINE = (TEXTBOOK, REFERENCE, COMPILED)


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


def flop_ratio(flops: Dict[str, dict], setting: str, base: str) -> float:
    """FLOPs (with the attention matmuls) of ``base`` over those of
    ``setting``; a ``<setting>@<variant>`` row runs the FLOPs of
    ``<setting>``."""
    key = 'gflops_with_attention'
    return flops[base.split('@')[0]][key] / flops[setting.split('@')[0]][key]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='deit-small')
    parser.add_argument('--batch-size', type=common.positive_int,
                        default=16)
    parser.add_argument(
        '--threads',
        type=common.positive_int,
        nargs='+',
        default=[2],
        help='intra-op thread counts to run, one table each')
    parser.add_argument('--repeats', type=common.positive_int, default=10)
    parser.add_argument('--warmup', type=common.non_negative_int, default=2)
    parser.add_argument(
        '--settings', nargs='+', default=['none', 'merge49', 'merge98', 'r8'])
    parser.add_argument(
        '--backends',
        nargs='+',
        default=['mmpretrain', 'timm'],
        choices=['mmpretrain', 'timm'])
    parser.add_argument(
        '--processes',
        type=int,
        default=1,
        help='fresh processes per allocator setting')
    parser.add_argument(
        '--allocators',
        nargs='+',
        default=['default'],
        choices=ALLOCATORS,
        help="'default': glibc as configured; 'tuned': mallopt thresholds "
        'raised so freed memory stays in the heap')
    parser.add_argument(
        '--malloc-tune',
        action='store_true',
        help="shorthand for --allocators tuned")
    parser.add_argument(
        '--textbook',
        nargs='*',
        default=['none', 'merge49'],
        help='settings also timed in the textbook formulation '
        '(benchmarks/textbook_tome.py; mmpretrain backend), named '
        '<setting>@textbook; give no value to skip')
    parser.add_argument(
        '--drop',
        nargs='*',
        default=['merge49'],
        help='settings also timed with tokens dropped instead of merged '
        '(benchmarks/drop_oracle.py: the bound for any merge '
        'implementation), named <setting>@drop; give no value to skip')
    parser.add_argument(
        '--reference',
        nargs='*',
        default=[],
        help='settings also timed with the reference ToMe '
        '(facebookresearch/ToMe, not shipped: it must be importable as '
        '`tome`; benchmarks/reference_tome.py; timm backend), named '
        '<setting>@reference; none by default')
    parser.add_argument(
        '--compiled',
        nargs='*',
        default=[],
        help='settings also timed as torch.compile\'d forwards (inductor, '
        'weight freezing; benchmarks/compiled_tome.py), named '
        '<setting>@compiled; include the first setting (none) for the '
        'compiled baseline; none by default')
    parser.add_argument(
        '--out-dir', default=osp.join(ROOT, 'benchmarks', 'results'))
    parser.add_argument('--name', default='tome_speed')
    parser.add_argument('--worker-out', default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        '--worker-allocator', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.malloc_tune:
        args.allocators = ['tuned']
    if args.processes < 1:
        parser.error(f'--processes={args.processes} must be >= 1')
    if args.reference and 'timm' not in args.backends:
        parser.error('--reference patches timm models: add timm to '
                     '--backends')
    if args.settings[0] != 'none':
        # every speed-up and FLOP ratio is taken against the first setting,
        # which the tables call the stock forward
        parser.error(f'--settings {" ".join(args.settings)}: must start '
                     'with none (the stock forward, the baseline of every '
                     'ratio)')
    if len(set(args.settings)) != len(args.settings):
        parser.error(f'--settings {" ".join(args.settings)}: repeated '
                     'entry')
    for option in ('textbook', 'drop', 'reference', 'compiled'):
        missing = [t for t in getattr(args, option) if t not in args.settings]
        if missing:
            parser.error(f'--{option} {missing} must also be in --settings')
    return args


def _extra_forwards(args, bench, model, backend: str) -> Dict:
    """The yardstick forwards timed in the same rounds: the textbook
    formulation (mmpretrain only), the reference ToMe (timm only), the
    token-dropping bound and the compiled forwards."""
    from compiled_tome import compiled_forward_fn
    from drop_oracle import drop_forward_fn
    from reference_tome import reference_forward_fn
    from textbook_tome import textbook_forward_fn
    from mergemix_mm.models.tome import vit_geometry
    num_layers = vit_geometry(model).num_layers
    # (suffix, settings, forward builder, backends it applies to)
    yardsticks = (
        (TEXTBOOK, args.textbook, textbook_forward_fn, ('mmpretrain', )),
        (REFERENCE, args.reference, reference_forward_fn, ('timm', )),
        (DROP, args.drop, drop_forward_fn, ('mmpretrain', 'timm')),
        (COMPILED, args.compiled, compiled_forward_fn, ('mmpretrain',
                                                        'timm')),
    )
    extra = {}
    for suffix, settings, forward_fn, backends in yardsticks:
        if backend not in backends:
            continue
        for t in settings:
            r_list = bench.parse_setting(t, num_layers)
            extra[t + suffix] = (r_list, forward_fn(model, r_list))
    return extra


def _record_reference_agreement(args, model, extra: Dict,
                                results: Dict) -> None:
    """``max_abs_diff`` of every reference row in ``extra`` (none unless
    ``_extra_forwards`` built them): its output against this library's
    forward with the same schedule, on one batch."""
    rows = {s: v for s, v in extra.items() if s.endswith(REFERENCE)}
    if not rows:
        return
    import torch
    from reference_tome import max_difference
    images = torch.randn(args.batch_size, 3, 224, 224)
    for s, (r_list, fn) in rows.items():
        results[s]['max_abs_diff'] = max_difference(model, r_list, images,
                                                    fn)


def run_worker(args) -> None:
    """One fresh process: every backend x thread count, written to JSON."""
    tuned = args.worker_allocator == 'tuned'
    applied = _malloc_tune() if tuned else False
    if tuned and not applied:
        raise RuntimeError('--allocators tuned needs glibc (mallopt failed)')
    import common
    import torch
    torch.manual_seed(0)
    bench = common.load_tool('benchmark_speed')
    out = dict(allocator=args.worker_allocator, runs={})
    for threads in args.threads:
        for backend in args.backends:
            torch.set_num_threads(threads)
            model = bench.build_model(args.arch, 224, backend)
            extra = _extra_forwards(args, bench, model, backend)
            results = bench.run_benchmark(
                model,
                args.settings,
                args.batch_size,
                224,
                args.repeats,
                args.warmup,
                progress=False,
                extra=extra)
            _record_reference_agreement(args, model, extra, results)
            overhead = bench.measure_merge_overhead(
                model, args.settings, args.batch_size, 224, repeats=2)
            for s, o in overhead.items():
                results[s]['merge_overhead'] = o
            out['runs'][f'{backend}/threads{threads}'] = results
    if hasattr(os, 'getloadavg'):
        out['loadavg_end'] = [round(v, 2) for v in os.getloadavg()]
    with open(args.worker_out, 'w') as f:
        json.dump(out, f)


def _worker_command(args, allocator: str, out: str) -> List[str]:
    cmd = [
        sys.executable,
        osp.abspath(__file__), '--arch', args.arch, '--batch-size',
        str(args.batch_size), '--repeats',
        str(args.repeats), '--warmup',
        str(args.warmup), '--threads', *map(str, args.threads), '--settings',
        *args.settings, '--backends', *args.backends, '--worker-out', out,
        '--worker-allocator', allocator, '--textbook', *args.textbook,
        '--drop', *args.drop, '--reference', *args.reference,
        '--compiled', *args.compiled
    ]
    return cmd


def _stats(values: List[float]) -> dict:
    return dict(
        speedups=[round(v, 4) for v in values],
        speedup=statistics.median(values),
        speedup_min=min(values),
        speedup_max=max(values))


def own_baseline_key(suffix: str) -> str:
    """Summary key of a yardstick row's speed-up against the yardstick's
    own forward without merging, e.g. ``'vs_textbook_none'``."""
    return f"vs_{suffix.lstrip('@')}_none"


def summarize(workers: List[dict]) -> Dict:
    """allocator -> backend/threads -> setting -> statistics over
    processes. Textbook and reference settings also get
    ``vs_textbook_none`` / ``vs_reference_none``: the same statistics
    against that forward without merging."""
    med = statistics.median
    summary = {}
    for alloc in sorted({w['allocator'] for w in workers}):
        runs = [w['runs'] for w in workers if w['allocator'] == alloc]
        summary[alloc] = {}
        for key in runs[0]:
            summary[alloc][key] = {}
            for s in runs[0][key]:
                rs = [r[key][s] for r in runs]
                shares = [
                    r['merge_overhead']['fraction'] for r in rs
                    if 'merge_overhead' in r
                ]
                row = dict(
                    r_list=rs[0]['r_list'],
                    **_stats([r['speedup'] for r in rs]),
                    paired_speedup=med([r['paired_speedup'] for r in rs]),
                    cpu_speedup=med([r['cpu_speedup'] for r in rs]),
                    median_s=med([r['median_s'] for r in rs]),
                    page_faults=med([r['median_page_faults'] for r in rs]),
                    sys_s=med([r['median_sys_s'] for r in rs]),
                    merge_share=med(shares) if shares else None)
                for suffix in OWN_BASELINE:
                    own_base = 'none' + suffix
                    if s.endswith(suffix) and own_base in runs[0][key]:
                        row[own_baseline_key(suffix)] = _stats([
                            r[key][own_base]['median_s'] /
                            r[key][s]['median_s'] for r in runs
                        ])
                if 'max_abs_diff' in rs[0]:
                    row['max_abs_diff'] = max(r['max_abs_diff'] for r in rs)
                if s + DROP in runs[0][key]:
                    # speed relative to the token-dropping bound (1 = at it)
                    row['vs_drop'] = _stats([
                        r[key][s + DROP]['median_s'] / r[key][s]['median_s']
                        for r in runs
                    ])
                summary[alloc][key][s] = row
    return summary


#: Title and introduction of the table of each whole-forward yardstick.
_YARDSTICK_TEXT = {
    TEXTBOOK:
    ('the textbook formulation',
     'The textbook forward (`benchmarks/textbook_tome.py`) writes ToMe as the '
     'paper describes it: explicit attention with proportional attention in '
     'every block, gather / scatter_reduce merging. It runs in the same '
     'rounds as the settings above. Its speed-up is given against the stock '
     'forward (`{base}`, fused attention) and against its own forward '
     'without merging (`{base}{suffix}`, explicit attention): the latter is '
     'the ratio a ToMe implementation reports when its baseline is its own '
     'un-merged forward.'),
    REFERENCE:
    ('the reference ToMe',
     'The reference is the official ToMe (facebookresearch/ToMe, CC-BY-NC, '
     'not part of this repository), imported from the Python path by '
     '`benchmarks/reference_tome.py`; it patches a copy of the same timm '
     'model (explicit attention, gather / scatter_reduce merging, '
     'proportional attention off, i.e. the same function as this '
     'implementation). It runs in the same rounds as the settings above. Its '
     'speed-up is given against the stock forward (`{base}`, fused '
     "attention) and against its own forward without merging "
     '(`{base}{suffix}`, explicit attention, as timm computed attention '
     'before its fused path, i.e. when the reference was published).'),
    COMPILED:
    ('torch.compile',
     'The compiled rows (`benchmarks/compiled_tome.py`) are the same '
     'forwards as the rows above, compiled with `torch.compile` (inductor, '
     'weight freezing) after they traced into one graph each; they run in '
     'the same rounds. Their speed-up is given against the eager stock '
     'forward (`{base}`) and against the compiled stock forward '
     '(`{base}{suffix}`): the latter is the ratio of merging when both sides '
     'are compiled.'),
}


def _own_baseline_rows(summary: Dict, suffix: str, base: str) -> List[list]:
    """Rows of a yardstick table: this implementation's merged setting, the
    yardstick's, and the yardstick's against its own un-merged forward."""
    rows = []
    key_own = own_baseline_key(suffix)
    for alloc, per_key in summary.items():
        for key, per_setting in per_key.items():
            for s, r in per_setting.items():
                if key_own not in r or s.startswith(base + '@'):
                    continue
                setting = s.split('@')[0]
                ours = per_setting[setting]
                rows.append([
                    alloc, key, setting,
                    speedup_range(ours, bold=True),
                    speedup_range(r),
                    speedup_range(r[key_own])
                ])
    return rows


def _agreement_lines(summary: Dict, suffix: str) -> List[str]:
    """A sentence with the largest output difference between the
    yardstick and this implementation, where the run measured it."""
    diffs = [(key, s, r['max_abs_diff'])
             for per_key in summary.values()
             for key, per_setting in per_key.items()
             for s, r in per_setting.items()
             if s.endswith(suffix) and 'max_abs_diff' in r]
    if not diffs:
        return []
    parts = ', '.join(f'{s} ({key}) {d:.1e}' for key, s, d in diffs)
    return [
        'Largest absolute difference between its pre-logits features and '
        "this implementation's for the same schedule (one batch per "
        f'process, largest over processes): {parts}.', ''
    ]


def speedup_range(stats: dict, bold: bool = False, unit: str = 'x') -> str:
    """``1.170x (1.128-1.216)``: median speed-up (bold: ``**1.170x**``) and
    range over processes; ``unit=''`` for a plain ratio (``0.970
    (0.950-0.990)``)."""
    mid = f"{stats['speedup']:.3f}{unit}"
    if bold:
        mid = f'**{mid}**'
    return (f"{mid} ({stats['speedup_min']:.3f}-"
            f"{stats['speedup_max']:.3f})")


def _markdown(payload: dict, args) -> str:
    import common
    flops, summary = payload['flops'], payload['summary']
    base = args.settings[0]
    n = args.processes
    out = [
        f'# ToMe inference throughput: {args.arch}, batch {args.batch_size},'
        ' 224 px, CPU', '', f"Command: `{payload['env']['command']}`", ''
    ]
    if payload.get('reference_source'):
        out += [
            'Reference ToMe (`@reference` rows) imported from '
            f"`{payload['reference_source']}`.", ''
        ]
    out += [
        f'Each of {n} fresh process(es) per allocator setting runs '
        f'{args.repeats} timed rounds after {args.warmup} warm-up rounds; in '
        'every round each setting runs once (rotating order) on the same '
        'randomly initialised weights. A process\'s speed-up is its median '
        f'time of `{base}` (the stock forward, merging off) over the '
        'setting\'s median time; the tables give the median over processes '
        'and, in brackets, the smallest and largest. *paired*: median over '
        'rounds of the per-round ratio (median over processes). *CPU*: the '
        'same from process CPU time. *page faults*: minor page faults per '
        'forward (median), i.e. memory the allocator had to take fresh from '
        'the OS. *merge share*: fraction of the forward spent in the merging '
        'step (metric, matching, weighted merge), timed in separate, '
        'instrumented forwards. FLOPs per image from '
        'tools/analysis/get_flops.py (1 MAC = 1 FLOP).', ''
    ]
    for alloc, per_key in summary.items():
        for key, per_setting in per_key.items():
            backend, threads = key.split('/threads')
            rows = []
            for s, r in per_setting.items():
                f = flops[s.split('@')[0]]
                ratio = flop_ratio(flops, s, base)
                share = (f"{100 * r['merge_share']:.1f}%"
                         if r['merge_share'] is not None else '-')
                rows.append([
                    s, ','.join(map(str, r['r_list'])), f['tokens'][-1],
                    f"{f['gflops_linear_conv']:.2f}",
                    f"{f['gflops_with_attention']:.2f}", f'{ratio:.3f}x',
                    f"{r['median_s']:.4f}",
                    speedup_range(r, bold=True),
                    f"{r['paired_speedup']:.3f}x",
                    f"{r['cpu_speedup']:.3f}x", f"{r['page_faults']:.0f}",
                    share
                ])
            out += [
                f'## allocator: {alloc}; {backend} backend, {threads} '
                'thread(s)', '',
                common.md_table([
                    'setting', 'r per block', 'tokens out', 'GFLOPs Lin/Conv',
                    'GFLOPs +attn', 'FLOP ratio (+attn)', 'median s / batch',
                    f'speed-up vs {base} (range over processes)', 'paired',
                    'CPU', 'page faults / forward', 'merge share'
                ], rows), ''
            ]
    bound_rows = []
    for alloc, per_key in summary.items():
        for key, per_setting in per_key.items():
            for s, r in per_setting.items():
                if 'vs_drop' not in r:
                    continue
                bound, rel = per_setting[s + DROP], r['vs_drop']
                ratio = flop_ratio(flops, s, base)
                bound_rows.append([
                    alloc, key, s, f'{ratio:.3f}x',
                    speedup_range(bound), speedup_range(r, bold=True),
                    speedup_range(rel, unit='')
                ])
    if bound_rows:
        out += [
            '## How close to the bound', '',
            'The token-dropping bound (`benchmarks/drop_oracle.py`) is this '
            "library's merged forward with the merging step replaced by "
            'keeping the first `T - r` tokens (one copy, no matching, no '
            'weighted average): the same blocks at the same token counts '
            'with the same fused attention, so its speed-up is what the '
            'schedule could gain on this machine if merging were free, an '
            'upper bound for any merge implementation. *at bound*: the '
            "bound's time over this implementation's (median over processes; "
            '1 means the merging step costs nothing).', '',
            common.md_table([
                'allocator', 'backend / threads', 'setting',
                'FLOP ratio (+attn)',
                f'token-dropping bound vs {base} (range)',
                f'this implementation vs {base} (range)', 'at bound (range)'
            ], bound_rows), ''
        ]
    for suffix, (title, intro) in _YARDSTICK_TEXT.items():
        rows = _own_baseline_rows(summary, suffix, base)
        if rows:
            name = suffix.lstrip('@')
            out += [
                f'## This implementation vs {title}', '',
                intro.format(base=base, suffix=suffix), '',
                common.md_table([
                    'allocator', 'backend / threads', 'setting',
                    f'this implementation vs {base} (range)',
                    f'{name} vs {base} (range)',
                    f'{name} vs {base}{suffix} (range)'
                ], rows), ''
            ]
            out += _agreement_lines(summary, suffix)
    # one row per process, to show the spread directly
    # every setting of any backend (the textbook rows are mmpretrain's, the
    # reference rows timm's)
    columns = list(
        dict.fromkeys(s for w in payload['workers']
                      for res in w['runs'].values() for s in res
                      if s != base))
    rows = []
    for i, w in enumerate(payload['workers']):
        for key, res in w['runs'].items():
            rows.append([
                i, w['allocator'], key,
                f"{res[base]['median_page_faults']:.0f}"
            ] + [
                f"{res[s]['speedup']:.3f}x" if s in res else '-'
                for s in columns
            ])
    out += [
        '## Every process', '',
        common.md_table(
            ['process', 'allocator', 'backend / threads',
             f'page faults / forward ({base})'] + columns, rows), '',
        '## Environment', '',
        common.env_markdown(payload['env']), ''
    ]
    return '\n'.join(out)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker_out:
        run_worker(args)
        return
    reference_source = None
    if args.reference:  # fail before minutes of timing, not in a worker
        from reference_tome import reference_location
        try:
            reference_source = reference_location()
        except ImportError as err:
            raise SystemExit(str(err)) from None
    import common
    from tqdm import tqdm
    import torch
    torch.set_num_threads(args.threads[0])
    bench = common.load_tool('benchmark_speed')
    flops_tool = common.load_tool('get_flops')
    from mergemix_mm.models.tome import vit_geometry

    env = common.environment(threads=args.threads[0])
    flop_model = flops_tool.build_from_args(None, args.arch, 224)
    num_layers = vit_geometry(flop_model).num_layers
    flops = {}
    for s in args.settings:
        try:  # a bad name or too many tokens: before any timing
            res = flops_tool.count_flops(
                flop_model, bench.parse_setting(s, num_layers), 224)
        except ValueError as err:
            raise SystemExit(f'--settings {s}: {err}') from None
        flops[s] = dict(
            gflops_linear_conv=res['linear_conv'] / 1e9,
            gflops_with_attention=res['total'] / 1e9,
            tokens=res['tokens'])
    del flop_model

    # Allocator settings alternate so that drift of the machine affects
    # both alike.
    plan = [a for _ in range(args.processes) for a in args.allocators]
    workers = []
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for i, alloc in enumerate(tqdm(plan, desc='processes', unit='proc')):
            out = osp.join(tmp, f'worker{i}.json')
            subprocess.run(_worker_command(args, alloc, out), check=True)
            with open(out) as f:
                workers.append(json.load(f))
    payload = dict(
        command=env['command'],
        env=env,
        flops=flops,
        reference_source=reference_source,
        processes=args.processes,
        settings=args.settings,
        summary=summarize(workers),
        workers=workers,
        wall_time_s=time.time() - start)
    md = _markdown(payload, args)
    print(md)
    common.write_results(args.name, payload, md, args.out_dir)


if __name__ == '__main__':
    main()
