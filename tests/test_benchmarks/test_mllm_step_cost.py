"""The MLLM step-cost benchmark rejects step counts below one."""
import os.path as osp
import sys

import pytest

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'benchmarks'))

import mllm_step_cost  # noqa: E402


@pytest.mark.parametrize('argv', [['--steps', '0'], ['--threads', '0']])
def test_counts_below_one_are_rejected(argv, monkeypatch, capsys):
    # --steps 0 used to build the models and fail on an empty median
    monkeypatch.setattr(sys, 'argv', ['mllm_step_cost.py', *argv])
    with pytest.raises(SystemExit):
        mllm_step_cost.parse_args()
    assert f'argument {argv[0]}' in capsys.readouterr().err
    monkeypatch.setattr(sys, 'argv', ['mllm_step_cost.py', '--steps', '1'])
    assert mllm_step_cost.parse_args().steps == 1
