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


def test_gpu_results_do_not_replace_the_cpu_results():
    """``--gpu`` used to write ``cost.json`` / ``cost.md`` over the CPU
    results (and the CPU-only accuracy-vs-cost plot then lost its data)."""
    assert cost.parse_args([]).name == 'cost'
    assert cost.parse_args(['--gpu']).name == 'cost_gpu'
    assert cost.parse_args(['--gpu', '--name', 'x']).name == 'x'


def test_unknown_method_names_the_option():
    threads = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit, match='--methods.*nosuch'):
            cost.main(['--methods', 'nosuch', '--threads', str(threads)])
    finally:
        torch.set_num_threads(threads)


def test_methods_take_turns_running_first(monkeypatch):
    """Side by side means the same rounds and no fixed order: the order
    rotates every round, so no method always runs first (warm caches)."""
    seen = []

    class Preprocessor:

        def forward(self, *args, **kwargs):
            pass

    class Model:

        def __init__(self):
            self.data_preprocessor = Preprocessor()

        def train_step(self, data, optim):
            pass

    monkeypatch.setattr(cost, '_setup', lambda *a, **k: (Model(), None,
                                                         None))
    monkeypatch.setattr(cost, '_method_cfg', lambda m, family: m)
    monkeypatch.setattr(cost.common, 'set_batch_augments',
                        lambda model, cfg: seen.append(cfg))
    methods = ['mixup', 'cutmix', 'mergemix']
    setting = dict(family='digits', warmup=1)
    cost.time_setting('t', setting, methods, iters=5, device='cpu')
    rounds = [seen[i:i + 3] for i in range(0, len(seen), 3)]
    assert len(rounds) == 6 and all(sorted(r) == sorted(methods)
                                    for r in rounds)
    assert {r[0] for r in rounds} == set(methods)
