"""The digits accuracy benchmark (with the MergeMix ablation) runs end to end
on a tiny budget and writes what it claims."""
import json
import os.path as osp
import sys

import pytest

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'benchmarks'))

import accuracy_digits as acc  # noqa: E402


def test_every_method_and_variant_has_a_config():
    names = acc.select(None)
    assert set(acc.MERGEMIX_VARIANTS) <= set(names)
    assert set(acc.ABLATION) <= set(names)
    for name in names:
        assert osp.isfile(acc.config_file(name)), name
    with pytest.raises(ValueError, match='unknown method'):
        acc.select(['mergemix-typo'])


def test_one_epoch_run_writes_tables(tmp_path, monkeypatch):
    monkeypatch.setattr(acc.common, 'plot_accuracy_vs_cost',
                        lambda *a, **k: None)
    acc.main([
        '--seeds', '0', '--epochs', '1', '--methods', 'mixup',
        'mergemix-openmixup', '--workers', '1', '--out',
        str(tmp_path), '--name', 'acc'
    ])
    with open(tmp_path / 'acc.json') as f:
        res = json.load(f)
    assert res['config']['methods'] == ['mixup', 'mergemix-openmixup']
    for m in ('mixup', 'mergemix-openmixup'):
        a = res['runs'][m]['0']['accuracy']
        assert 0.0 <= a <= 100.0 and res['runs'][m]['0']['steps'] == 22
    md = (tmp_path / 'acc.md').read_text()
    assert '## MergeMix ablation' in md
    assert 'MergeMix, compat=openmixup' in md
    assert 'vit-tiny_1xb64-mergemix-openmixup-noscale_digits-32px.py' in md
    assert not (tmp_path / 'acc.partial.json').exists()


def test_resume_summarises_only_the_requested_seeds(tmp_path, monkeypatch):
    """A partial file from an earlier, larger run: the summary covers the
    seeds asked for, as the page says, not every stored run."""
    monkeypatch.setattr(acc.common, 'plot_accuracy_vs_cost',
                        lambda *a, **k: None)
    run = dict(train_time_s=1.0, step_time_s=0.1, steps=22)
    stored = {str(s): dict(run, accuracy=a)
              for s, a in ((0, 80.0), (1, 82.0), (2, 20.0))}
    (tmp_path / 'acc.partial.json').write_text(
        json.dumps(dict(epochs=1, runs=dict(mixup=stored))))
    acc.main(['--seeds', '0', '1', '--epochs', '1', '--methods', 'mixup',
              '--workers', '1', '--out', str(tmp_path), '--name', 'acc',
              '--resume', '--no-ablation'])
    with open(tmp_path / 'acc.json') as f:
        res = json.load(f)
    assert sorted(res['runs']['mixup']) == ['0', '1']
    assert res['summary']['mixup']['mean'] == pytest.approx(81.0)


@pytest.mark.parametrize('argv', [['--epochs', '0'], ['--workers', '0'],
                                  ['--threads', '0'], ['--seeds', '-1']])
def test_bad_counts_name_the_option(argv, capsys):
    # --epochs 0 used to train nothing and divide by zero steps
    with pytest.raises(SystemExit):
        acc.parse_args(argv)
    assert f'argument {argv[0]}' in capsys.readouterr().err


def test_a_repeated_seed_is_rejected(capsys):
    # it used to run twice and report one value as "2 seeds"
    with pytest.raises(SystemExit):
        acc.parse_args(['--seeds', '0', '0'])
    assert '--seeds' in capsys.readouterr().err


def test_unknown_method_names_the_option(tmp_path):
    import torch
    threads = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit, match='--methods.*mergemix-typo'):
            acc.main(['--methods', 'mergemix-typo', '--out', str(tmp_path),
                      '--threads', str(threads)])
    finally:
        torch.set_num_threads(threads)
