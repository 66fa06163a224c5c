"""RNGStateHook with several ranks: the states stored in a checkpoint are
those of the step it is saved at (faked ranks; the real two-process runs are
in test_distributed.py, marked slow)."""
import types

import pytest
from mmengine.hooks import CheckpointHook

import mergemix_mm.engine.rng_state as rs


@pytest.fixture
def two_ranks(monkeypatch):
    """Rank 0 of 2; a state records the iteration it was taken at."""
    runner = types.SimpleNamespace(hooks=[], iter=0, epoch=0, max_iters=100)
    monkeypatch.setattr(rs, 'get_dist_info', lambda: (0, 2))
    monkeypatch.setattr(rs, 'get_rng_state',
                        lambda: dict(rank=0, at=runner.iter))
    monkeypatch.setattr(
        rs, 'all_gather_object',
        lambda state: [state, dict(rank=1, at=runner.iter)])
    return runner


@pytest.mark.parametrize('interval,save_begin', [(4, 2), (3, 0), (5, 7)])
def test_iteration_checkpoints_store_every_rank_at_the_save(
        two_ranks, interval, save_begin):
    """The gather follows CheckpointHook's own condition, ``save_begin``
    included: with ``save_begin=2`` it gathered at iterations 4, 8, ... and
    iteration 6's checkpoint stored rank 1's state of iteration 4."""
    runner = two_ranks
    ckpt = CheckpointHook(interval=interval, by_epoch=False,
                          save_begin=save_begin, save_last=False)
    runner.hooks = [ckpt]
    hook = rs.RNGStateHook()
    saved = []
    for i in range(20):
        runner.iter = i
        hook.after_train_iter(runner, i)
        if ckpt.every_n_train_iters(runner, interval, save_begin):
            checkpoint = {}
            hook.before_save_checkpoint(runner, checkpoint)
            saved.append(checkpoint[rs._KEY])
    assert saved
    for states in saved:
        assert [s['rank'] for s in states] == [0, 1]
        assert states[0]['at'] == states[1]['at']


def test_states_of_another_step_are_not_stored(two_ranks, monkeypatch):
    """A gather of another iteration is dropped with a warning (rank 0's
    state only: a resume then says it cannot restore the others), never
    stored as if it were this step's."""
    runner = two_ranks
    logged = []
    monkeypatch.setattr(rs, 'print_log',
                        lambda msg, **kwargs: logged.append(msg))
    hook = rs.RNGStateHook()
    runner.iter = 3
    hook.after_train_epoch(runner)
    runner.iter = 5
    checkpoint = {}
    hook.before_save_checkpoint(runner, checkpoint)
    assert checkpoint[rs._KEY] == [dict(rank=0, at=5)]
    assert len(logged) == 1 and 'gathered at iteration 3, not at 5' in \
        logged[0]


def test_best_checkpoint_after_validation_uses_the_epoch_states(two_ranks):
    """Epoch loops: the states gathered at the end of the epoch also serve a
    best checkpoint saved after validation (neutral: same iteration)."""
    runner = two_ranks
    hook = rs.RNGStateHook()
    runner.iter, runner.epoch = 40, 1
    hook.after_train_epoch(runner)
    runner.epoch = 2  # the loop counts the epoch before validating
    checkpoint = {}
    hook.before_save_checkpoint(runner, checkpoint)
    assert checkpoint[rs._KEY] == [dict(rank=0, at=40), dict(rank=1, at=40)]
