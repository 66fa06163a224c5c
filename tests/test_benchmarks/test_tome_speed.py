"""The ToMe throughput benchmark aggregates fresh processes correctly."""
import json
import os.path as osp
import sys

import pytest

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'benchmarks'))

import tome_speed  # noqa: E402


def _run(speedups, faults):
    return {
        'none':
        dict(
            r_list=[0, 0],
            speedup=1.0,
            paired_speedup=1.0,
            cpu_speedup=1.0,
            median_s=1.0,
            median_page_faults=faults,
            median_sys_s=0.1),
        'r4':
        dict(
            r_list=[4, 4],
            speedup=speedups,
            paired_speedup=speedups + 0.01,
            cpu_speedup=speedups - 0.01,
            median_s=1.0 / speedups,
            median_page_faults=0,
            median_sys_s=0.0,
            merge_overhead=dict(fraction=0.05))
    }


def test_summarize_takes_median_and_range_per_allocator():
    workers = [
        dict(allocator='default', runs={'mmpretrain/threads2': _run(s, f)})
        for s, f in [(1.1, 100), (1.3, 9000), (1.2, 50)]
    ] + [dict(allocator='tuned', runs={'mmpretrain/threads2': _run(1.15, 0)})]
    summary = tome_speed.summarize(workers)
    assert set(summary) == {'default', 'tuned'}
    r = summary['default']['mmpretrain/threads2']['r4']
    assert r['speedups'] == [1.1, 1.3, 1.2]
    assert r['speedup'] == pytest.approx(1.2)
    assert (r['speedup_min'], r['speedup_max']) == (1.1, 1.3)
    assert r['paired_speedup'] == pytest.approx(1.21)
    assert r['merge_share'] == pytest.approx(0.05)
    assert summary['default']['mmpretrain/threads2']['none'][
        'page_faults'] == 100
    assert summary['tuned']['mmpretrain/threads2']['r4']['speedup'] == 1.15


@pytest.mark.parametrize('suffix', ['@textbook', '@reference', '@compiled'])
def test_yardstick_rows_get_their_own_baseline(suffix):
    run = _run(1.2, 0)
    run['none' + suffix] = dict(run['none'], median_s=1.5, speedup=1 / 1.5)
    run['r4' + suffix] = dict(run['r4'], median_s=1.25, speedup=0.8)
    summary = tome_speed.summarize(
        [dict(allocator='default', runs={'timm/threads2': run})])
    r = summary['default']['timm/threads2']
    key = tome_speed.own_baseline_key(suffix)
    assert key == f"vs_{suffix[1:]}_none"
    assert r['r4' + suffix]['speedup'] == pytest.approx(0.8)
    assert r['r4' + suffix][key]['speedup'] == pytest.approx(1.2)
    assert key not in r['r4']
    assert r['none' + suffix][key]['speedup'] == 1.0  # not a table row
    # the table row: this implementation, the yardstick, the yardstick
    # against its own un-merged forward
    rows = tome_speed._own_baseline_rows(summary, suffix, 'none')
    assert rows == [[
        'default', 'timm/threads2', 'r4', '**1.200x** (1.200-1.200)',
        '0.800x (0.800-0.800)', '1.200x (1.200-1.200)'
    ]]
    other = '@textbook' if suffix == '@reference' else '@reference'
    assert tome_speed._own_baseline_rows(summary, other, 'none') == []


def test_reference_agreement_is_the_largest_over_processes():
    runs = []
    for diff in (2e-6, 4e-6, 3e-6):
        run = _run(1.2, 0)
        run['r4@reference'] = dict(run['r4'], max_abs_diff=diff)
        runs.append(dict(allocator='tuned', runs={'timm/threads2': run}))
    summary = tome_speed.summarize(runs)
    r = summary['tuned']['timm/threads2']
    assert r['r4@reference']['max_abs_diff'] == 4e-6
    assert 'max_abs_diff' not in r['r4']
    lines = tome_speed._agreement_lines(summary, '@reference')
    assert 'r4@reference (timm/threads2) 4.0e-06' in lines[0]
    assert tome_speed._agreement_lines(summary, '@textbook') == []


def test_agreement_is_recorded_for_the_reference_rows_only(monkeypatch):
    import types
    calls = []

    def max_difference(model, r_list, images, fn):
        calls.append((list(r_list), tuple(images.shape), fn))
        return 3e-6

    monkeypatch.setitem(sys.modules, 'reference_tome',
                        types.SimpleNamespace(max_difference=max_difference))
    args = tome_speed.parse_args(['--batch-size', '2'])
    results = {s: {} for s in ('r4', 'r4@drop', 'r4@reference')}
    extra = {'r4@drop': ([4], 'drop_fn'), 'r4@reference': ([4], 'ref_fn')}
    tome_speed._record_reference_agreement(args, 'model', extra, results)
    assert calls == [([4], (2, 3, 224, 224), 'ref_fn')]
    assert results == {'r4': {}, 'r4@drop': {},
                       'r4@reference': {'max_abs_diff': 3e-6}}
    # no reference rows (e.g. the mmpretrain backend): nothing is run
    del extra['r4@reference']
    tome_speed._record_reference_agreement(args, 'model', extra, results)
    assert len(calls) == 1


@pytest.mark.parametrize('backend,expected', [
    ('mmpretrain', ['r4@textbook', 'r4@drop', 'r4@compiled']),
    ('timm', ['r4@reference', 'r4@drop', 'r4@compiled']),
])
def test_each_backend_gets_its_yardsticks(monkeypatch, backend, expected):
    """The textbook forward is built for mmpretrain models only, the
    reference for timm models only, the dropping bound and the compiled
    forward for both; each with the setting's parsed schedule, in that
    order."""
    import types
    built = []

    def builder(name):

        def fn(model, r_list):
            built.append((name, list(r_list)))
            return name

        return fn

    for module, attr in (('textbook_tome', 'textbook_forward_fn'),
                         ('reference_tome', 'reference_forward_fn'),
                         ('drop_oracle', 'drop_forward_fn'),
                         ('compiled_tome', 'compiled_forward_fn')):
        monkeypatch.setitem(sys.modules, module,
                            types.SimpleNamespace(**{attr: builder(module)}))
    from timm.models.vision_transformer import VisionTransformer
    model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32,
                              depth=2, num_heads=2)
    bench = types.SimpleNamespace(
        parse_setting=lambda setting, num_layers: [4] * num_layers)
    args = tome_speed.parse_args([
        '--settings', 'none', 'r4', '--textbook', 'r4', '--reference', 'r4',
        '--drop', 'r4', '--compiled', 'r4'
    ])
    extra = tome_speed._extra_forwards(args, bench, model, backend)
    assert list(extra) == expected
    assert all(r_list == [4, 4] for r_list, _ in extra.values())
    module = {'@textbook': 'textbook_tome', '@reference': 'reference_tome',
              '@drop': 'drop_oracle', '@compiled': 'compiled_tome'}
    assert [fn for _, fn in extra.values()] == [
        module[s[2:]] for s in expected]
    assert built == [(module[s[2:]], [4, 4]) for s in expected]


def test_speedup_range_formats_median_and_range():
    stats = dict(speedup=1.17, speedup_min=1.128, speedup_max=1.2161)
    assert tome_speed.speedup_range(stats) == '1.170x (1.128-1.216)'
    assert tome_speed.speedup_range(stats, bold=True) == (
        '**1.170x** (1.128-1.216)')
    assert tome_speed.speedup_range(stats, unit='') == '1.170 (1.128-1.216)'


def test_merged_rows_are_compared_with_the_dropping_bound():
    runs = []
    for bound_s, ours_s in [(0.80, 0.84), (0.82, 0.82), (0.78, 0.87)]:
        run = _run(1.0 / ours_s, 0)
        run['r4@drop'] = dict(
            run['r4'], median_s=bound_s, speedup=1.0 / bound_s)
        runs.append(dict(allocator='tuned',
                         runs={'mmpretrain/threads2': run}))
    r = tome_speed.summarize(runs)['tuned']['mmpretrain/threads2']
    rel = r['r4']['vs_drop']
    assert rel['speedups'] == [
        pytest.approx(0.80 / 0.84, abs=1e-4), 1.0,
        pytest.approx(0.78 / 0.87, abs=1e-4)
    ]
    assert rel['speedup'] == pytest.approx(0.80 / 0.84, abs=1e-4)
    assert 'vs_drop' not in r['none'] and 'vs_drop' not in r['r4@drop']


def test_flop_ratio_reads_the_base_setting_of_variant_rows():
    flops = dict(none=dict(gflops_with_attention=4.6),
                 merge49=dict(gflops_with_attention=4.0))
    assert tome_speed.flop_ratio(flops, 'merge49', 'none') == 4.6 / 4.0
    assert tome_speed.flop_ratio(flops, 'merge49@drop', 'none') == 4.6 / 4.0
    assert tome_speed.flop_ratio(flops, 'none@textbook', 'none') == 1.0
    assert tome_speed.flop_ratio(flops, 'none', 'merge49') == 4.0 / 4.6


def test_bad_arguments_are_rejected():
    with pytest.raises(SystemExit):
        tome_speed.parse_args(['--processes', '0'])
    with pytest.raises(SystemExit):  # a textbook setting not benchmarked
        tome_speed.parse_args(['--settings', 'none', '--textbook', 'r8'])
    with pytest.raises(SystemExit):  # a dropping setting not benchmarked
        tome_speed.parse_args(['--settings', 'none', '--textbook', '--drop',
                               'r8'])
    with pytest.raises(SystemExit):  # a reference setting not benchmarked
        tome_speed.parse_args(['--settings', 'none', '--textbook', '--drop',
                               '--reference', 'r8'])
    with pytest.raises(SystemExit):  # the reference patches timm models
        tome_speed.parse_args(['--backends', 'mmpretrain', '--reference',
                               'none'])
    with pytest.raises(SystemExit):  # a compiled setting not benchmarked
        tome_speed.parse_args(['--settings', 'none', '--textbook', '--drop',
                               '--compiled', 'r8'])
    for settings in (['merge49', 'none'], ['none', 'r8', 'r8']):
        # the first setting is every ratio's baseline, called the stock one
        with pytest.raises(SystemExit):
            tome_speed.parse_args(['--settings', *settings])
    assert tome_speed.parse_args([]).reference == []  # not shipped: opt-in
    assert tome_speed.parse_args([]).compiled == []  # minutes: opt-in


def test_end_to_end_in_fresh_processes(tmp_path):
    tome_speed.main([
        '--arch', 'deit-tiny', '--batch-size', '1', '--processes', '1',
        '--allocators', 'default', 'tuned', '--repeats', '1', '--warmup', '0',
        '--backends', 'mmpretrain', '--settings', 'none', 'r4', '--textbook',
        'none', 'r4', '--drop', 'r4', '--out-dir',
        str(tmp_path), '--name', 'speed'
    ])
    with open(tmp_path / 'speed.json') as f:
        payload = json.load(f)
    assert [w['allocator'] for w in payload['workers']] == ['default', 'tuned']
    r4 = payload['summary']['tuned']['mmpretrain/threads2']['r4']
    assert r4['r_list'] == [4] * 12 and r4['speedup'] > 0
    assert payload['flops']['r4']['tokens'][-1] == 197 - 48
    md = (tmp_path / 'speed.md').read_text()
    assert 'allocator: tuned; mmpretrain backend' in md
    assert '## Every process' in md
    tb = payload['summary']['default']['mmpretrain/threads2']['r4@textbook']
    assert tb['vs_textbook_none']['speedup'] > 0
    assert '## This implementation vs the textbook formulation' in md
    for alloc in ('default', 'tuned'):
        res = payload['summary'][alloc]['mmpretrain/threads2']
        assert res['r4']['vs_drop']['speedup'] > 0
        assert res['r4@drop']['r_list'] == [4] * 12
    assert '## How close to the bound' in md
    # the vector ISA is recorded: kernels and rounding differ between them
    isa = payload['env']['cpu_capability']
    assert isinstance(isa, str) and isa and f'| cpu_capability | {isa} |' in md


@pytest.mark.parametrize('argv', [['--repeats', '0'], ['--batch-size', '0'],
                                  ['--warmup', '-1'], ['--threads', '0']])
def test_bad_counts_name_the_option(argv, capsys):
    # they used to fail in the worker process, after the FLOP counting
    with pytest.raises(SystemExit):
        tome_speed.parse_args(argv)
    assert f'argument {argv[0]}' in capsys.readouterr().err


@pytest.mark.parametrize('setting', ['foo', 'merge999'])
def test_bad_setting_names_the_option(setting, tmp_path):
    with pytest.raises(SystemExit, match=f'--settings {setting}: '):
        tome_speed.main([
            '--settings', 'none', setting, '--textbook', '--drop',
            '--out-dir',
            str(tmp_path)
        ])


def test_missing_reference_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, 'tome', None)
    with pytest.raises(SystemExit, match='--reference needs'):
        tome_speed.main([
            '--backends', 'timm', '--settings', 'none', '--textbook',
            '--drop', '--reference', 'none', '--out-dir',
            str(tmp_path)
        ])
