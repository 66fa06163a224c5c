"""The results page's ToMe table reads every yardstick's own baseline."""
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'benchmarks'))

import make_report  # noqa: E402


def _row(speedup, **extra):
    return dict(speedup=speedup, speedup_min=speedup - 0.1,
                speedup_max=speedup + 0.1, cpu_speedup=speedup,
                merge_share=None, **extra)


def test_tome_table_gives_yardsticks_against_their_own_forward():
    own = dict(speedup=1.15, speedup_min=1.1, speedup_max=1.2)
    ts = dict(
        processes=3,
        flops=dict(none=dict(gflops_with_attention=4.6),
                   merge49=dict(gflops_with_attention=3.82)),
        summary={'tuned': {'timm/threads2': {
            'none': _row(1.0),
            'merge49': _row(1.15, vs_drop=dict(speedup=0.97)),
            'none@reference': _row(0.95, vs_reference_none=own),
            'merge49@reference': _row(1.08, vs_reference_none=own),
            'merge49@textbook': _row(1.10, vs_textbook_none=own),
        }}})
    lines = make_report.tome_table(ts).splitlines()
    assert 'vs its own un-merged forward' in lines[0]
    rows = {line.split(' | ')[2]: line.split(' | ') for line in lines[2:]}
    assert set(rows) == {'merge49', 'none@reference', 'merge49@reference',
                         'merge49@textbook'}  # the stock baseline is omitted
    assert rows['merge49@reference'][4] == '**1.150x** (1.100-1.200)'
    assert rows['merge49@textbook'][4] == '**1.150x** (1.100-1.200)'
    assert rows['merge49'][4] == '-' and rows['merge49'][5] == '0.970'
    assert rows['none@reference'][4] == '-'  # itself: not a ratio to show
    assert rows['merge49@reference'][7] == '1.204x'  # FLOP ratio of merge49


def test_every_result_file_is_listed_with_its_command(tmp_path):
    """The MLLM and reliability results were missing from the page."""
    import json
    (tmp_path / 'mllm_step_cost.json').write_text(json.dumps(dict(
        env=dict(command='python benchmarks/mllm_step_cost.py --steps 3'),
        wall_seconds=120)))
    (tmp_path / 'reliability_x.json').write_text(json.dumps(dict(
        command='python tools/reliability/kill_resume_loop.py')))
    text = make_report.build(str(tmp_path))
    assert ('* [mllm_step_cost](results/mllm_step_cost.md): `python '
            'benchmarks/mllm_step_cost.py --steps 3` (2.0 min)') in text
    assert ('* [reliability_x](results/reliability_x.md): `python '
            'tools/reliability/kill_resume_loop.py`') in text
    assert '* `accuracy`: not run yet' in text


def test_page_and_results_can_live_elsewhere(tmp_path, capsys):
    """--results / --out: the page links the results folder relative to
    itself, and the committed page is left alone."""
    import json

    import pytest
    committed = osp.join(make_report.HERE, 'README.md')
    before = open(committed).read()
    res = tmp_path / 'res'
    res.mkdir()
    (res / 'mllm_step_cost.json').write_text(json.dumps(dict(
        env=dict(command='python benchmarks/mllm_step_cost.py'))))
    out = tmp_path / 'pages' / 'page.md'
    out.parent.mkdir()
    make_report.main(['--results', str(res), '--out', str(out)])
    text = out.read_text()
    assert '* [mllm_step_cost](../res/mllm_step_cost.md)' in text
    assert '](results/' not in text
    assert open(committed).read() == before
    with pytest.raises(SystemExit):
        make_report.main(['--results', str(tmp_path / 'nope')])
    assert '--results' in capsys.readouterr().err
    assert open(committed).read() == before


def test_committed_page_is_up_to_date():
    """benchmarks/README.md is what make_report builds from the committed
    result files (re-run ``python benchmarks/make_report.py`` after a
    benchmark)."""
    with open(osp.join(make_report.HERE, 'README.md')) as f:
        assert f.read() == make_report.build()
