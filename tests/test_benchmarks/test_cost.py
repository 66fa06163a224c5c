"""The cost benchmark rejects bad options with a one-line error."""
import os.path as osp
import sys

import pytest
import torch

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'benchmarks'))

import cost  # noqa: E402


@pytest.mark.parametrize('argv', [['--iters', '0'], ['--iters', '-2'],
                                  ['--threads', '0']])
def test_counts_below_one_are_rejected(argv, capsys):
    # --iters 0 used to fall back silently to the per-setting default
    with pytest.raises(SystemExit):
        cost.parse_args(argv)
    assert f'argument {argv[0]}' in capsys.readouterr().err


def test_unknown_method_names_the_option():
    threads = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit, match='--methods.*nosuch'):
            cost.main(['--methods', 'nosuch', '--threads', str(threads)])
    finally:
        torch.set_num_threads(threads)
