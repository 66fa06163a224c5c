"""The MergeMix cost benchmark checks its options before any timing and
writes where it is told."""
import json
import os.path as osp
import sys

import pytest
import torch

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'benchmarks'))

import mergemix_cost  # noqa: E402


@pytest.fixture
def no_timing(monkeypatch):
    def fail(*args, **kwargs):
        pytest.fail('timing started despite a bad option')

    monkeypatch.setattr(mergemix_cost, 'time_steps', fail)
    monkeypatch.setattr(mergemix_cost, 'measure_memory', fail)


@pytest.mark.parametrize('argv', [
    ['--variants', 'mixup', 'mergmix'],  # used to time a model without
    ['--settings', 'tiny'],              # augment / raise a KeyError
    ['--reps', '0'],
    ['--batch', '0'],
])
def test_bad_options_exit_before_timing(argv, no_timing, monkeypatch,
                                        capsys):
    threads = torch.get_num_threads()
    monkeypatch.setattr(sys, 'argv', ['mergemix_cost.py', *argv])
    try:
        with pytest.raises(SystemExit):
            mergemix_cost.main()
    finally:
        torch.set_num_threads(threads)
    assert f'argument {argv[0]}' in capsys.readouterr().err


def test_results_go_to_the_output_folder(tmp_path, monkeypatch):
    threads = torch.get_num_threads()
    monkeypatch.setattr(sys, 'argv', [
        'mergemix_cost.py', '--settings', 'tiny32', '--variants', 'mixup',
        '--reps', '1', '--batch', '2', '--threads', str(threads),
        '--out-dir', str(tmp_path), '--out', 'mc'
    ])
    try:
        mergemix_cost.main()
    finally:
        torch.set_num_threads(threads)
    with open(tmp_path / 'mc.json') as f:
        payload = json.load(f)
    assert payload['reps'] == 1
    assert list(payload['results']['tiny32']['time_s']) == ['mixup']
    assert '--out-dir' in (tmp_path / 'mc.md').read_text()
    assert payload['wall_time_s'] > 0
    assert 'Total wall time' in (tmp_path / 'mc.md').read_text()


def test_memory_worker_gets_the_thread_count(monkeypatch):
    """The CPU memory worker runs with --threads as the timed steps (it
    used to run with the default whatever --threads said)."""
    seen = {}

    class Done:
        stdout = json.dumps(dict(peak_mib=1.0))

    def run(cmd, **kwargs):
        seen['cmd'] = cmd
        return Done()

    monkeypatch.setattr(mergemix_cost.subprocess, 'run', run)
    assert mergemix_cost.measure_memory('tiny32', 'mixup', 4, 'cpu', 3) == 1.0
    cmd = seen['cmd']
    assert cmd[cmd.index('--threads') + 1] == '3'
    assert cmd[cmd.index('--batch') + 1] == '4'
