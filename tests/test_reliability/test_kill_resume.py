"""Kill and resume (issue 10, item 2).

Default tests interrupt a tiny in-process run (an exception at a training or
validation iteration stands in for the kill), resume it from its last
checkpoint and compare with an uninterrupted run: same epochs and iterations,
and bit-identical weights, which needs :class:`RNGStateHook` (the tests with
the hook switched off show the difference it makes).

The slow tests SIGKILL real ``tools/train.py`` runs of the digits demo at
random points (``tools/reliability/kill_resume_loop.py``)::

    pytest -m slow tests/test_reliability/test_kill_resume.py
"""
import os
import os.path as osp
import sys

import pytest
import torch
from toy_runner import InterruptHook, Interrupted, build_toy_runner, weights

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


def _run(work_dir, interrupt=None, rng_hook=True, max_epochs=3):
    """Train; if interrupted, resume once. Return the final runner."""
    hooks = [interrupt] if interrupt is not None else []
    runner = build_toy_runner(work_dir, max_epochs=max_epochs,
                              rng_hook=rng_hook, custom_hooks=hooks)
    if interrupt is None:
        runner.train()
        return runner
    with pytest.raises(Interrupted):
        runner.train()
    runner = build_toy_runner(work_dir, max_epochs=max_epochs, resume=True,
                              rng_hook=rng_hook)
    runner.train()
    return runner


def _max_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


INTERRUPTS = {
    'mid_epoch_3': dict(iteration=15),   # 6 iterations per epoch
    'first_iter_of_epoch_2': dict(iteration=7),
    'before_first_checkpoint': dict(iteration=3),
    'validation_after_epoch_2': dict(val_epoch=2, val_iter=2),
}


@pytest.mark.parametrize('where', sorted(INTERRUPTS))
def test_resumed_run_equals_uninterrupted_run(tmp_path, where):
    ref = _run(str(tmp_path / 'ref'))
    got = _run(str(tmp_path / 'cut'), InterruptHook(**INTERRUPTS[where]))
    assert (got.epoch, got.iter) == (ref.epoch, ref.iter) == (3, 18)
    assert _max_diff(weights(ref), weights(got)) == 0.0


@pytest.mark.parametrize('iteration', [9, 13])
def test_iteration_based_loop_resumes_exactly(tmp_path, iteration):
    """IterBasedTrainLoop: checkpoints every 6 iterations; the data pipeline
    of the toy dataset draws nothing, so the resume is exact too."""
    def run(work_dir, interrupt=None):
        hooks = [interrupt] if interrupt else []
        runner = build_toy_runner(work_dir, by_epoch=False,
                                  custom_hooks=hooks)
        if interrupt is None:
            runner.train()
            return runner
        with pytest.raises(Interrupted):
            runner.train()
        runner = build_toy_runner(work_dir, by_epoch=False, resume=True)
        runner.train()
        return runner

    ref = run(str(tmp_path / 'ref'))
    got = run(str(tmp_path / 'cut'), InterruptHook(iteration=iteration))
    assert got.iter == ref.iter == 18
    assert _max_diff(weights(ref), weights(got)) == 0.0


def test_without_rng_states_the_resumed_run_differs(tmp_path):
    """What RNGStateHook fixes: mmengine re-seeds on resume, so dropout masks
    and NumPy draws after the resume differ from the uninterrupted run."""
    ref = _run(str(tmp_path / 'ref'), rng_hook=False)
    got = _run(str(tmp_path / 'cut'), InterruptHook(iteration=15),
               rng_hook=False)
    assert (got.epoch, got.iter) == (ref.epoch, ref.iter)
    assert _max_diff(weights(ref), weights(got)) > 1e-6


def test_without_neutral_validation_a_kill_in_validation_differs(tmp_path):
    """The checkpoint is saved before validation; validation draws a seed
    for its dataloader. Unless validation is RNG-neutral, a run resumed
    from that checkpoint misses that draw."""
    cfg = dict(neutral_validation=False)
    ref = _run(str(tmp_path / 'ref'), rng_hook=cfg)
    got = _run(str(tmp_path / 'cut'), InterruptHook(val_epoch=2),
               rng_hook=cfg)
    assert _max_diff(weights(ref), weights(got)) > 1e-6


def test_checkpoint_holds_rng_states_and_load_from_ignores_them(tmp_path):
    runner = build_toy_runner(str(tmp_path / 'a'), max_epochs=1)
    runner.train()
    ckpt = torch.load(str(tmp_path / 'a' / 'epoch_1.pth'),
                      weights_only=False)
    assert len(ckpt['rng_states']) == 1
    assert set(ckpt['rng_states'][0]) >= {'python', 'numpy', 'torch'}
    # fine-tuning from a checkpoint (load_from, no resume) keeps the seed's
    # stream: the first draws equal those of a fresh run
    fresh = build_toy_runner(str(tmp_path / 'b'), max_epochs=1)
    from mergemix_mm.engine import RNGStateHook
    hook = [h for h in fresh.hooks if isinstance(h, RNGStateHook)][0]
    hook.after_load_checkpoint(fresh, ckpt)
    assert hook._to_restore is None


# ----------------------------------------------------------------------
# slow: real SIGKILLs of tools/train.py (digits demo, shrunk)
def _loop_module():
    sys.path.insert(0, osp.join(ROOT, 'tools', 'reliability'))
    import kill_resume_loop
    return kill_resume_loop


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['train_iter', 'val', 'save', 'random_time',
                                  'truncate_latest'])
def test_sigkill_and_resume_tools_train(tmp_path, kind):
    loop = _loop_module()
    import random
    ref_dir = str(tmp_path / 'ref')
    ref_run = loop.run(ref_dir)
    assert ref_run['rc'] == 0, ref_run['out'][-2000:]
    ref = loop.final_state(ref_dir)
    rng = random.Random(int(os.environ.get('RELIABILITY_SEED', '0')))
    trials = int(os.environ.get('RELIABILITY_TRIALS', '2'))
    for _ in range(trials):
        t = loop.trial(kind, str(tmp_path / 'trial'), ref, ref_run['wall'],
                       rng)
        assert t['resume_rc'] == 0, t
        assert t['lost_finished_epochs'] == 0, t
        assert (t['epoch'], t['iter']) == (ref['meta']['epoch'],
                                           ref['meta']['iter']), t
        assert t['identical'], t


def test_set_rng_state_restores_python_numpy_and_torch():
    import random

    import numpy as np

    from mergemix_mm.engine import get_rng_state, set_rng_state

    def draw():
        return (random.random(), np.random.rand(), torch.rand(1).item())

    state = get_rng_state()
    first = draw()
    assert draw() != first
    set_rng_state(state)
    assert draw() == first
    with pytest.raises(TypeError, match='get_rng_state'):
        set_rng_state(dict(python=random.getstate()))
