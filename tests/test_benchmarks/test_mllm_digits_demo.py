"""The MLLM digits demo rejects options that would mislabel its table."""
import os.path as osp
import sys

import pytest

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'benchmarks'))

import mllm_digits_demo  # noqa: E402


@pytest.mark.parametrize('argv', [['--seeds', '0', '0'], ['--threads', '0']])
def test_bad_options_name_the_option(argv, monkeypatch, capsys):
    # a repeated seed used to be run twice and summarised as two seeds
    monkeypatch.setattr(sys, 'argv', ['mllm_digits_demo.py', *argv])
    with pytest.raises(SystemExit):
        mllm_digits_demo.parse_args()
    assert argv[0] in capsys.readouterr().err
    monkeypatch.setattr(sys, 'argv', ['mllm_digits_demo.py', '--seeds', '0',
                                      '1'])
    assert mllm_digits_demo.parse_args().seeds == [0, 1]
