"""Write ``benchmarks/README.md`` (the results page) from the committed
result files in ``benchmarks/results/``.

Every number on the page is read from a ``results/*.json`` written by a
benchmark script; nothing is typed in by hand. Re-run after any benchmark::

    python benchmarks/make_report.py
    # results written elsewhere (e.g. with a benchmark's --out-dir), page
    # written elsewhere; links on the page point at the results folder
    python benchmarks/make_report.py --results /tmp/res --out /tmp/res.md

Missing result files are listed on the page as "not run yet" instead of
failing, so the page can be regenerated after any subset of benchmarks.
"""
import glob
import json
import os.path as osp
import sys
from typing import Optional

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import accuracy_digits  # noqa: E402
import common  # noqa: E402
import tome_speed  # noqa: E402

HERE = osp.dirname(osp.abspath(__file__))
#: Further ``tome_speed.py --name`` runs shown under the main ToMe table.
TOME_EXTRA = [
    ('tome_speed_1thread', 'One thread'),
    ('tome_speed_focused',
     'Merge 49 in focus: tuned allocator, 8 processes x 20 rounds'),
    ('tome_speed_reference',
     'Against the reference ToMe (facebookresearch/ToMe, installed '
     'separately): timm backend, tuned allocator, 8 processes x 10 rounds'),
    ('tome_speed_compiled',
     'Compiled: torch.compile (inductor, weight freezing) on both sides, '
     'tuned allocator, 4 processes x 10 rounds'),
    ('tome_speed_avx512',
     'AVX-512 host (2026-12-07, quiet machine): tuned allocator, '
     '4 processes x 8 rounds'),
    ('tome_speed_avx512_s14',
     'AVX-512 host, the same command re-run (2026-12-07, quiet machine): '
     'tuned allocator, 4 processes x 8 rounds'),
    ('tome_speed_s15',
     'AVX-512 host, the same command, next session (2026-12-07 21:20, '
     'quiet machine, slower absolute times): tuned allocator, 4 processes '
     'x 8 rounds'),
    ('tome_speed_s16',
     'AVX-512 host, the same command, next session (2026-12-07 22:54, '
     'merging step unchanged): tuned allocator, 4 processes x 8 rounds'),
    ('tome_speed_s17',
     'AVX-512 host, the same command, next session (2026-12-08 01:04, '
     'merging step unchanged): tuned allocator, 4 processes x 8 rounds'),
]


def _load(name: str, results: str) -> Optional[dict]:
    path = osp.join(results, f'{name}.json')
    if not osp.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _command(payload: dict) -> str:
    env = payload.get('environment') or payload.get('env') or {}
    return env.get('command') or payload.get('command') or '?'


def _ratio(x: Optional[float]) -> str:
    return '-' if x is None else f'{x:.2f}x'


def decision_table(acc, cost, fidelity) -> str:
    """One row per method: digits accuracy, step cost (tiny ViT and DeiT-S),
    peak memory and label fidelity, side by side."""
    methods = list(common.METHODS)
    if acc:
        methods += [m for m in acc['summary'] if m not in methods]
    rows = []
    for m in methods:
        a = (acc or {}).get('summary', {}).get(m)
        tiny = deit = None
        if cost:
            tiny = cost['settings'].get('vit-tiny-32', {}).get(
                'methods', {}).get(m)
            deit = cost['settings'].get('deit-s-224', {}).get(
                'methods', {}).get(m)
        fid = (fidelity or {}).get('results', {}).get(m)
        if not (a or tiny or deit or fid):
            continue
        mem = '-'
        if deit and 'peak_memory_bytes' in deit:
            ref = cost['settings']['deit-s-224']['methods']['mixup']
            mem = _ratio(deit['peak_memory_bytes'] /
                         ref['peak_memory_bytes'])
        rows.append([
            accuracy_digits.label(m),
            f"{a['mean']:.1f} ± {a['std']:.1f}" if a else '-',
            _ratio(tiny['ratio_vs_mixup']) if tiny else '-',
            _ratio(deit['ratio_vs_mixup']) if deit else '-', mem,
            f"{fid['mae']:.3f}" if fid else '-'
        ])
    return common.md_table([
        'method', 'digits top-1 (%)', 'step vs Mixup (tiny ViT, 32 px)',
        'step vs Mixup (DeiT-S, 224 px)', 'peak memory vs Mixup (DeiT-S)',
        'label MAE (lower is better)'
    ], rows)


def mergemix_cost_table(mc) -> str:
    rows = []
    for setting, r in mc['results'].items():
        for v, t in r['time_s'].items():
            if not isinstance(t, dict):  # older result format
                continue
            m_ref = r['peak_mib'].get('mixup')
            rows.append([
                setting, v, f"{t['median_s']:.3f}",
                _ratio(t['ratio']),
                _ratio(r['peak_mib'][v] / m_ref) if m_ref else '-'
            ])
    return common.md_table(
        ['setting', 'variant', 'median step (s)', 'vs Mixup',
         'peak memory vs Mixup'], rows)


def tome_table(ts) -> str:
    """Median speed-up over fresh processes (range in brackets) per
    allocator setting, backend and merge setting; textbook, reference and
    compiled rows also against their own un-merged forward; merged rows
    with a ``<setting>@drop`` row also relative to that token-dropping
    bound."""
    rows = []
    flops = ts['flops']
    own_keys = [tome_speed.own_baseline_key(suffix)
                for suffix in tome_speed.OWN_BASELINE]
    for alloc, per_key in ts['summary'].items():
        for key, per_setting in per_key.items():
            for s, r in per_setting.items():
                base = s.split('@')[0]
                if base == 'none' and s == base:
                    continue
                ratio = tome_speed.flop_ratio(flops, s, 'none')
                own = next((r[k] for k in own_keys if k in r), None)
                bound = r.get('vs_drop')
                rows.append([
                    alloc, key, s, tome_speed.speedup_range(r, bold=True),
                    tome_speed.speedup_range(own, bold=True)
                    if own and base != 'none' else '-',
                    f"{bound['speedup']:.3f}" if bound else '-',
                    f"{r['cpu_speedup']:.3f}x", f'{ratio:.3f}x',
                    f"{100 * r['merge_share']:.1f}%"
                    if r.get('merge_share') is not None else '-'
                ])
    return common.md_table([
        'allocator', 'backend / threads', 'setting',
        f"speed-up vs stock forward, median of {ts['processes']} processes "
        '(range)', 'vs its own un-merged forward (none@textbook / '
        'none@reference / none@compiled)',
        'at token-dropping bound (1 = merging is free)', 'CPU-time speed-up',
        'FLOP ratio (+attn)', 'merge share'
    ], rows)


def tome_fault_note(ts) -> str:
    """What the page-fault counts of the default-allocator processes say."""
    faults = [
        res['none']['median_page_faults'] for w in ts['workers']
        if w['allocator'] == 'default' for res in w['runs'].values()
    ]
    text = ('Each process is a fresh Python process. The `tuned` rows keep '
            'freed memory in the heap (`mallopt`), so no forward pays for '
            'fresh pages and the ratio is compute alone.')
    if faults:
        hit = [f for f in faults if f > 1000]
        text += (
            f' With the default allocator the stock forward took fresh pages '
            f'from the OS in {len(hit)} of {len(faults)} process runs '
            + (f'({min(hit):.0f}-{max(hit):.0f} minor page faults per '
               'forward); merged forwards do too in some processes, so '
               'single-process ratios move by several points '
               if hit else '') + '(see tome_speed.md).')
    return text


def build(results: str = common.RESULTS, link: str = 'results') -> str:
    """The results page.

    Args:
        results (str): Folder of the result files. Defaults to
            :data:`common.RESULTS`.
        link (str): How the page links that folder (relative to the page).
            Defaults to ``'results'``.

    Returns:
        str: The page's markdown.
    """
    acc = _load('accuracy', results)
    cost = _load('cost', results)
    fid = _load('label_fidelity', results)
    mc = _load('mergemix_cost', results)
    ts = _load('tome_speed', results)
    ts_extra = [(name, title, _load(name, results))
                for name, title in TOME_EXTRA]
    lines = [
        '# Benchmarks', '',
        'Everything below was measured on this project\'s machines (2 CPU '
        'cores, no GPU) by the scripts in this folder; the page itself is '
        'generated by `python benchmarks/make_report.py` from '
        '`results/*.json`. Each linked result file records its command '
        'and the software versions, and most also the git commit and the '
        'CPU model (see its environment table). CPU step '
        'times are compared **within one run** (interleaved rounds) and '
        'reported as ratios; absolute times mean little on a shared CPU.',
        '', '## How to read this', '',
        '* **digits top-1**: a tiny ViT (4 blocks, width 96, patch 4) '
        'trained from scratch on the 1,347 UCI digits for a short schedule, '
        'mean ± std over seeds ([accuracy.md](results/accuracy.md)). It is a '
        'small-data, short-schedule regime: mixing methods that cut patches '
        'out lose accuracy against no mixing here, unlike on CIFAR/ImageNet '
        'at hundreds of epochs. Use it to compare methods with each other, '
        'not as a proxy for the paper\'s tables.',
        '* **step vs Mixup**: one full `train_step` (augment, forward, '
        'backward, optimiser) relative to a Mixup step of the same round '
        '([cost.md](results/cost.md)); attention-guided methods pay for '
        'their extra forward here.',
        '* **label MAE**: mean absolute error between the label weight a '
        'method gives the own image and the truly visible fraction of its '
        'object, on generated images with objects at known places '
        '([label_fidelity.md](results/label_fidelity.md)).',
        '* **What the digits runs say about MergeMix**: keeping the most '
        'attended patches of the own image leaves most of its object '
        'visible, while the partner patches pasted over its least attended '
        'places still show a good part of the partner\'s object; the label '
        'weight (kept pixel fraction) then under-weights the own image '
        '(negative bias in the label-fidelity table). In this short '
        'schedule that shows up as low accuracy of MergeMix alone; the '
        'official recipe adds a Mixup loss and recovers Mixup-level '
        'accuracy, and longer training narrowed the gap in single-seed '
        'runs (the 30-epoch demo runs are in [published runs]'
        '(results/runs/README.md)).', ''
    ]
    if acc or cost or fid:
        lines += [
            '## All methods side by side', '',
            decision_table(acc, cost, fid), '',
            'Recipes: each method\'s digits config (`configs/baselines/'
            'digits/`, MergeMix: the demo config, no auxiliary loss) for '
            'the accuracy and tiny-ViT columns; each method\'s CIFAR-100 '
            'config for the DeiT-S columns, which for MergeMix is the '
            'official recipe (ToMe classifying passes plus the auxiliary '
            'Mixup loss; see the MergeMix cost table below for MergeMix '
            'without it). Label MAE: each method alone, MergeMix as in the '
            'demo config.', ''
        ]
    png = osp.join(results, 'accuracy_vs_cost.png')
    if osp.exists(png):
        lines += [
            '![accuracy vs step cost](results/accuracy_vs_cost.png)', ''
        ]
    if mc:
        lines += [
            '## MergeMix training-step cost', '',
            'MergeMix without the auxiliary loss (classifying pass '
            'un-merged: `mergemix`; with the backbone\'s ToMe schedule: '
            '`mergemix-tome`) and the official recipe with the auxiliary '
            'Mixup loss (`mergemix-official`), against Mixup and no mixing '
            '([mergemix_cost.md](results/mergemix_cost.md)).', '',
            mergemix_cost_table(mc), ''
        ]
    if ts:
        lines += [
            '## ToMe inference throughput (DeiT-S, batch 16)', '',
            '[tome_speed.md](results/tome_speed.md) (every process, page '
            'faults, per-setting times)', '', tome_table(ts), '',
            tome_fault_note(ts), ''
        ]
    for name, title, payload in ts_extra:
        if payload:
            lines += [
                f'### {title}', '', f'[{name}.md](results/{name}.md)', '',
                tome_table(payload), ''
            ]
    lines += ['## Commands', '']
    runs = [('accuracy', acc), ('cost', cost), ('label_fidelity', fid),
            ('mergemix_cost', mc), ('tome_speed', ts)]
    runs += [(name, payload) for name, _, payload in ts_extra]
    # the other result files (MLLM, reliability): linked with their command
    listed = {name for name, _ in runs}
    for path in sorted(glob.glob(osp.join(results, '*.json'))):
        name = osp.splitext(osp.basename(path))[0]
        if name not in listed:
            runs.append((name, _load(name, results)))
    for name, payload in runs:
        if payload is None:
            lines.append(f'* `{name}`: not run yet')
            continue
        wall = payload.get('wall_time_s') or payload.get('wall_seconds')
        extra = f' ({wall / 60:.1f} min)' if wall else ''
        lines.append(f'* [{name}](results/{name}.md): '
                     f'`{_command(payload)}`{extra}')
    lines += [
        '', 'GPU: `python benchmarks/cost.py --gpu` and '
        '`python benchmarks/mergemix_cost.py --gpu` run the same '
        'comparisons on CUDA (not run here: no GPU was available).', ''
    ]
    text = '\n'.join(lines)
    if link != 'results':  # every link on the page starts '](results/'
        text = text.replace('](results/', f']({link}/')
    return text


def main(argv=None) -> None:
    import argparse
    parser = argparse.ArgumentParser(
        description='Rebuild benchmarks/README.md from results/*.json.')
    parser.add_argument('--results', default=common.RESULTS,
                        help='folder of the result files (default: '
                        'benchmarks/results)')
    parser.add_argument('--out', default=osp.join(HERE, 'README.md'),
                        help='page to write (default: benchmarks/README.md)')
    args = parser.parse_args(argv)
    if not osp.isdir(args.results):
        parser.error(f'--results {args.results}: no such folder')
    from mergemix_mm.utils.checkpoint_safety import atomic_write_text
    path = osp.abspath(args.out)
    link = osp.relpath(osp.abspath(args.results), osp.dirname(path))
    text = build(args.results, link.replace(osp.sep, '/'))
    atomic_write_text(text, path)
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
