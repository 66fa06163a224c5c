"""Crash-safe checkpoints (issue 10, item 1): atomic saving, and an auto
resume that falls back past a truncated or corrupt latest checkpoint."""
import logging
import os
import os.path as osp
import signal

import pytest
import torch
from toy_runner import build_toy_runner, weights

import mmengine.runner.checkpoint as ckpt_mod
from mergemix_mm.utils import checkpoint_safety as cs
from mergemix_mm.utils.checkpoint_safety import (CheckpointCorruptError,
                                                 atomic_save_checkpoint,
                                                 check_checkpoint,
                                                 find_resumable_checkpoint)


def _ckpt(epoch: int) -> dict:
    return dict(
        meta=dict(epoch=epoch, iter=10 * epoch),
        state_dict={'w': torch.full((64, 64), float(epoch))},
        message_hub={})


def _work_dir(tmp_path, epochs=(1, 2, 3), record=3):
    for e in epochs:
        atomic_save_checkpoint(_ckpt(e), str(tmp_path / f'epoch_{e}.pth'))
    if record is not None:
        (tmp_path / 'last_checkpoint').write_text(
            str(tmp_path / f'epoch_{record}.pth'))
    return tmp_path


def _truncate(path, fraction):
    size = osp.getsize(path)
    with open(path, 'r+b') as f:
        f.truncate(int(size * fraction))


def _flip_byte(path, where=0.5):
    with open(path, 'r+b') as f:
        f.seek(int(osp.getsize(path) * where))
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


class _Capture(logging.Handler):

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append((record.levelno, record.getMessage()))


@pytest.fixture
def logger():
    log = logging.Logger('reliability-test')
    log.addHandler(_Capture())
    return log


def _warnings(log):
    return [m for lvl, m in log.handlers[0].messages if lvl >= logging.WARNING]


# ----------------------------------------------------------------------
# atomic save
def test_patch_routes_mmengine_saves_through_atomic_write():
    import mmengine.runner as runner_pkg
    import mmengine.runner.runner as runner_mod
    assert ckpt_mod.save_checkpoint is atomic_save_checkpoint
    assert runner_mod.save_checkpoint is atomic_save_checkpoint
    assert runner_pkg.save_checkpoint is atomic_save_checkpoint


def test_atomic_save_replaces_and_leaves_no_temp(tmp_path):
    path = str(tmp_path / 'epoch_1.pth')
    ckpt_mod.save_checkpoint(_ckpt(1), path)
    ckpt_mod.save_checkpoint(_ckpt(2), path)
    assert check_checkpoint(path)['epoch'] == 2
    assert os.listdir(tmp_path) == ['epoch_1.pth']
    reference = tmp_path / 'plain'
    reference.write_bytes(b'x')  # permissions a plain open() gives
    assert os.stat(path).st_mode & 0o777 == reference.stat().st_mode & 0o777
    reference.unlink()


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    path = str(tmp_path / 'epoch_1.pth')
    ckpt_mod.save_checkpoint(_ckpt(1), path)

    def broken(obj, f, *a, **k):
        f.write(b'PK\x03\x04partial')
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(torch, 'save', broken)
    with pytest.raises(OSError, match='No space left'):
        ckpt_mod.save_checkpoint(_ckpt(2), path)
    monkeypatch.undo()
    assert check_checkpoint(path)['epoch'] == 1
    assert os.listdir(tmp_path) == ['epoch_1.pth']  # temp file removed


def _sigkill_half_way(save, path, patch_put=False):
    """Fork; the child saves epoch 2 over epoch 1 and SIGKILLs itself after
    half the bytes reached the disk."""
    save(_ckpt(1), path)
    pid = os.fork()
    if pid == 0:  # child
        import io
        original = torch.save

        def half(f, data):
            f.write(data[:len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)

        def half_save(obj, f, *a, **k):
            if isinstance(f, io.BytesIO):
                return original(obj, f, *a, **k)
            buf = io.BytesIO()
            original(obj, buf, *a, **k)
            half(f, buf.getvalue())

        def half_put(backend, obj, filepath):
            with open(filepath, 'wb') as f:
                half(f, obj)

        torch.save = half_save
        if patch_put:
            from mmengine.fileio.backends import LocalBackend
            LocalBackend.put = half_put
        try:
            save(_ckpt(2), path)
        finally:
            os._exit(3)  # not reached when the kill happened
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def test_sigkill_while_saving_never_truncates_checkpoint(tmp_path):
    path = str(tmp_path / 'epoch_1.pth')
    _sigkill_half_way(atomic_save_checkpoint, path, patch_put=True)
    assert check_checkpoint(path)['epoch'] == 1  # the old, complete file
    stale = [n for n in os.listdir(tmp_path) if n.endswith('.tmp')]
    assert len(stale) == 1 and stale[0].startswith('.epoch_1.pth.')
    removed = cs.remove_stale_temp_files(str(tmp_path))
    assert [osp.basename(p) for p in removed] == stale
    assert os.listdir(tmp_path) == ['epoch_1.pth']


def test_mmengine_save_truncates_under_the_same_kill(tmp_path):
    """The fault injection is real: mmengine's own save leaves a truncated
    checkpoint under the same SIGKILL."""
    path = str(tmp_path / 'epoch_1.pth')
    _sigkill_half_way(cs._ORIGINAL['save'], path, patch_put=True)
    with pytest.raises(CheckpointCorruptError, match='epoch_1.pth'):
        check_checkpoint(path)


# ----------------------------------------------------------------------
# validation
@pytest.mark.parametrize('damage', ['empty', 'trunc_10', 'trunc_50',
                                    'trunc_99.9', 'bit_flip', 'garbage'])
def test_check_checkpoint_detects_damage(tmp_path, damage):
    path = str(tmp_path / 'epoch_1.pth')
    atomic_save_checkpoint(_ckpt(1), path)
    if damage == 'empty':
        _truncate(path, 0)
    elif damage.startswith('trunc'):
        _truncate(path, float(damage.split('_')[1]) / 100)
    elif damage == 'bit_flip':
        _flip_byte(path, 0.6)  # inside the tensor data: torch.load misses it
    else:
        with open(path, 'wb') as f:
            f.write(b'not a checkpoint at all' * 10)
    with pytest.raises(CheckpointCorruptError) as info:
        check_checkpoint(path)
    assert path in str(info.value)


def test_check_checkpoint_kinds(tmp_path):
    path = str(tmp_path / 'weights.pth')
    torch.save({'w': torch.ones(2)}, path)  # plain weights: fine to load_from
    assert check_checkpoint(path, kind='weights') == {}
    with pytest.raises(CheckpointCorruptError, match='state_dict'):
        check_checkpoint(path, kind='resume')
    with pytest.raises(ValueError, match="kind='everything'"):
        check_checkpoint(path, kind='everything')


# ----------------------------------------------------------------------
# resume fallback
def test_intact_latest_is_used_without_warning(tmp_path, logger):
    _work_dir(tmp_path)
    assert find_resumable_checkpoint(str(tmp_path), logger) == str(
        tmp_path / 'epoch_3.pth')
    assert _warnings(logger) == []


@pytest.mark.parametrize('fraction', [0.0, 0.3, 0.9, 0.999])
def test_truncated_latest_falls_back_naming_both_files(
        tmp_path, logger, fraction):
    _work_dir(tmp_path)
    _truncate(tmp_path / 'epoch_3.pth', fraction)
    got = find_resumable_checkpoint(str(tmp_path), logger)
    assert got == str(tmp_path / 'epoch_2.pth')
    fallback = [m for m in _warnings(logger) if 'falling back' in m]
    assert len(fallback) == 1
    assert 'epoch_3.pth' in fallback[0] and 'epoch_2.pth' in fallback[0]


def test_corrupt_latest_and_previous_falls_back_further(tmp_path, logger):
    _work_dir(tmp_path)
    _flip_byte(tmp_path / 'epoch_3.pth')
    _truncate(tmp_path / 'epoch_2.pth', 0.5)
    assert find_resumable_checkpoint(str(tmp_path), logger) == str(
        tmp_path / 'epoch_1.pth')


def test_no_good_checkpoint_stops_with_clear_error(tmp_path, logger):
    _work_dir(tmp_path, epochs=(1, 2), record=2)
    _truncate(tmp_path / 'epoch_2.pth', 0.5)
    _truncate(tmp_path / 'epoch_1.pth', 0.0)
    with pytest.raises(CheckpointCorruptError) as info:
        find_resumable_checkpoint(str(tmp_path), logger)
    msg = str(info.value)
    assert 'Cannot resume' in msg and 'no usable checkpoint' in msg
    assert 'epoch_1.pth' in msg and 'epoch_2.pth' in msg
    assert 'empty' in msg and 'truncated' in msg


def test_record_pointing_to_missing_file(tmp_path, logger):
    _work_dir(tmp_path, epochs=(1, 2), record=None)
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_3.pth'))
    assert find_resumable_checkpoint(str(tmp_path), logger) == str(
        tmp_path / 'epoch_2.pth')
    assert any('epoch_3.pth' in m and 'no such file' in m
               for m in _warnings(logger))


@pytest.mark.parametrize('record', ['empty', 'missing'])
def test_unusable_record_resumes_newest_good(tmp_path, logger, record):
    _work_dir(tmp_path, epochs=(1, 2), record=None)
    if record == 'empty':
        (tmp_path / 'last_checkpoint').write_text('')
    assert find_resumable_checkpoint(str(tmp_path), logger) == str(
        tmp_path / 'epoch_2.pth')
    assert any('last_checkpoint' in m and 'epoch_2.pth' in m
               for m in _warnings(logger))


def test_complete_checkpoint_newer_than_record_is_used(tmp_path, logger):
    """Killed after the atomic rename but before last_checkpoint was
    updated: the finished epoch is not lost."""
    _work_dir(tmp_path, epochs=(1, 2, 3), record=2)
    assert find_resumable_checkpoint(str(tmp_path), logger) == str(
        tmp_path / 'epoch_3.pth')
    assert any('newer' in m for m in _warnings(logger))


@pytest.mark.parametrize('recorded_ok', [True, False])
def test_higher_numbered_checkpoint_of_an_earlier_run_is_ignored(
        tmp_path, logger, recorded_ok):
    """A reused work_dir: an earlier run left epoch_200, this run saved
    epoch_1 and epoch_2 (recorded). Resuming continues this run, also when
    the recorded checkpoint is broken."""
    _work_dir(tmp_path, epochs=(200, ), record=None)
    old = osp.getmtime(tmp_path / 'epoch_200.pth') - 100
    os.utime(tmp_path / 'epoch_200.pth', (old, old))
    _work_dir(tmp_path, epochs=(1, 2), record=2)
    if not recorded_ok:
        _truncate(tmp_path / 'epoch_2.pth', 0.5)
    expected = 'epoch_2.pth' if recorded_ok else 'epoch_1.pth'
    assert find_resumable_checkpoint(str(tmp_path), logger) == str(
        tmp_path / expected)
    assert any('epoch_200.pth' in m and 'earlier run' in m
               for m in _warnings(logger))


def test_fresh_work_dir_starts_from_scratch(tmp_path, logger):
    assert find_resumable_checkpoint(str(tmp_path), logger) is None


def test_iteration_checkpoints(tmp_path, logger):
    for it in (100, 200):
        atomic_save_checkpoint(_ckpt(1), str(tmp_path / f'iter_{it}.pth'))
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_200.pth'))
    _truncate(tmp_path / 'iter_200.pth', 0.5)
    assert find_resumable_checkpoint(str(tmp_path), logger) == str(
        tmp_path / 'iter_100.pth')


# ----------------------------------------------------------------------
# through mmengine's Runner
def test_runner_auto_resume_falls_back_past_truncated_latest(tmp_path):
    build_toy_runner(str(tmp_path), max_epochs=2, val=False).train()
    _truncate(tmp_path / 'epoch_2.pth', 0.5)
    runner = build_toy_runner(
        str(tmp_path), max_epochs=3, resume=True, val=False)
    runner.train()
    assert runner.epoch == 3 and runner.iter == 18
    assert check_checkpoint(str(tmp_path / 'epoch_2.pth'))['epoch'] == 2
    log = '\n'.join(
        open(osp.join(r, f)).read() for r, _, fs in os.walk(tmp_path)
        for f in fs if f.endswith('.log'))
    line = [ln for ln in log.splitlines() if 'falling back' in ln]
    assert len(line) == 1
    assert 'epoch_2.pth' in line[0] and 'epoch_1.pth' in line[0]


def test_runner_without_usable_checkpoint_raises(tmp_path):
    build_toy_runner(str(tmp_path), max_epochs=1, val=False).train()
    _truncate(tmp_path / 'epoch_1.pth', 0.2)
    runner = build_toy_runner(
        str(tmp_path), max_epochs=2, resume=True, val=False)
    with pytest.raises(CheckpointCorruptError, match='epoch_1.pth'):
        runner.train()


@pytest.mark.parametrize('resume', [True, False])
def test_explicit_checkpoint_is_named_when_corrupt(tmp_path, resume):
    build_toy_runner(str(tmp_path / 'a'), max_epochs=1, val=False).train()
    path = str(tmp_path / 'a' / 'epoch_1.pth')
    _flip_byte(path)
    runner = build_toy_runner(
        str(tmp_path / 'b'), max_epochs=2, resume=resume, load_from=path,
        val=False)
    with pytest.raises(CheckpointCorruptError, match='epoch_1.pth'):
        runner.train()


def test_trusted_loader_names_truncated_file(tmp_path):
    from mergemix_mm.utils.compat import load_local_checkpoint_trusted
    path = str(tmp_path / 'model.pth')
    torch.save({'w': torch.ones(3)}, path)
    _truncate(path, 0.5)
    with pytest.raises(CheckpointCorruptError, match='model.pth'):
        load_local_checkpoint_trusted(path)


def test_resumed_weights_come_from_fallback_checkpoint(tmp_path):
    """The fallback really loads the previous checkpoint's weights."""
    first = build_toy_runner(str(tmp_path), max_epochs=1, val=False)
    first.train()
    w1 = weights(first)
    build_toy_runner(str(tmp_path), max_epochs=2, resume=True,
                     val=False).train()
    _truncate(tmp_path / 'epoch_2.pth', 0.5)
    runner = build_toy_runner(
        str(tmp_path), max_epochs=2, resume=True, val=False)
    runner.load_or_resume()
    assert runner.epoch == 1
    for k, v in weights(runner).items():
        assert torch.equal(v, w1[k])


def test_an_interrupted_write_leaves_no_temp_file(tmp_path):
    def interrupted(f):
        f.write('partial')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cs._atomic_replace(str(tmp_path / 'x.txt'), interrupted, 'x')
    assert os.listdir(tmp_path) == []


def test_atomic_save_figure_format_and_failure(tmp_path, monkeypatch):
    """The format follows the extension (PNG without one); a savefig that
    fails half-way keeps the previous file and leaves no temporary file."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(1, 1))
    fig.subplots().plot([0, 1], [1, 0])
    cs.atomic_save_figure(fig, str(tmp_path / 'f.png'), dpi=50)
    cs.atomic_save_figure(fig, str(tmp_path / 'sub' / 'f.pdf'))
    cs.atomic_save_figure(fig, str(tmp_path / 'plain'))
    assert (tmp_path / 'f.png').read_bytes()[:4] == b'\x89PNG'
    assert (tmp_path / 'sub' / 'f.pdf').read_bytes()[:4] == b'%PDF'
    assert (tmp_path / 'plain').read_bytes()[:4] == b'\x89PNG'
    before = (tmp_path / 'f.png').read_bytes()

    def broken(f, **kwargs):
        f.write(b'\x89PNG partial')
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(fig, 'savefig', broken)
    with pytest.raises(OSError, match='No space left'):
        cs.atomic_save_figure(fig, str(tmp_path / 'f.png'))
    assert (tmp_path / 'f.png').read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ['f.png', 'plain', 'sub']


def test_atomic_write_text_takes_relative_and_home_paths(tmp_path,
                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    cs.atomic_write_text('here', 'x.txt')
    cs.atomic_write_text('home', '~/y.txt')
    assert (tmp_path / 'x.txt').read_text() == 'here'
    assert (tmp_path / 'home' / 'y.txt').read_text() == 'home'
