"""Crash-safe checkpoints: atomic saving and resuming that survives bad files.

mmengine 0.10.7 writes a checkpoint with a plain ``open(path, 'wb')``: a job
killed while saving (pre-emption, OOM killer, node failure) leaves a truncated
``epoch_N.pth``, and ``--resume`` (auto) then dies on it with
``PytorchStreamReader failed reading zip archive`` without naming the file.
Two small fixes, applied on ``import mergemix_mm``:

* :func:`atomic_save_checkpoint` replaces mmengine's ``save_checkpoint`` for
  local paths: the checkpoint is written to a hidden temporary file in the
  same directory, flushed and ``fsync``-ed, then moved into place with
  :func:`os.replace` (atomic on POSIX) and the directory entry is synced. A
  kill at any moment leaves either the old file or the complete new one (and
  at worst a stale ``.epoch_N.pth.<pid>.<id>.tmp`` that the next resume
  removes). Remote back-ends (``s3://``, ``pavi://``, ...) keep mmengine's
  behaviour.
* :func:`find_resumable_checkpoint` replaces ``find_latest_checkpoint`` in
  ``Runner.load_or_resume`` for ``resume=True`` without a path. It checks the
  checkpoint named in ``work_dir/last_checkpoint`` (zip structure, the CRC of
  every record, unpickling, ``meta``/``state_dict`` keys) and, if that file
  is missing, truncated or corrupt, falls back to the newest good
  ``epoch_*.pth`` / ``iter_*.pth`` next to it with a warning naming both
  files. When checkpoints exist but none is readable it stops with an error
  listing every file and why it was rejected. A complete checkpoint that is
  newer than ``last_checkpoint`` (the job was killed between saving it and
  updating ``last_checkpoint``) is used too, with a warning.

``--resume PATH`` and ``load_from`` never fall back (the user chose the file);
a bad file raises :class:`CheckpointCorruptError` naming it.
"""
import glob
import logging
import os
import os.path as osp
import re
import shutil
import uuid
import zipfile
from typing import Callable, List, Optional, Tuple

import torch

__all__ = [
    'CheckpointCorruptError', 'atomic_save_checkpoint', 'atomic_save_figure',
    'atomic_write', 'atomic_write_stream', 'atomic_write_text',
    'check_checkpoint',
    'find_resumable_checkpoint', 'patch_atomic_checkpoint_save',
    'patch_resume_fallback', 'remove_stale_temp_files'
]

#: Names of the checkpoints CheckpointHook writes with its default template.
_CKPT_RE = re.compile(r'^(epoch|iter)_(\d+)\.pth$')
#: Temporary files written by :func:`atomic_save_checkpoint`.
_TMP_GLOB = '.*.pth.*.tmp'
_APPLIED = set()


class CheckpointCorruptError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt or not a checkpoint.

    Args:
        message (str): The full message (it names the file).
        path (str, optional): The checkpoint path. Defaults to None.
        reason (str, optional): Short cause. Defaults to None.
    """

    def __init__(self,
                 message: str,
                 path: Optional[str] = None,
                 reason: Optional[str] = None):
        super().__init__(message)
        self.path = path
        self.reason = reason


def _fsync_dir(dirname: str) -> None:
    """Persist a directory entry (rename) where the OS supports it."""
    try:
        fd = os.open(dirname, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse
        pass
    finally:
        os.close(fd)


def _atomic_replace(filename: str,
                    write: Callable,
                    mode: str,
                    sync: bool = True) -> None:
    """Write ``filename`` through ``write(file)`` into a temporary file in
    the same folder (created if missing), then rename it into place: a
    failure or an interrupt leaves the previous file (or none), never a
    half-written one. ``sync=False`` skips the ``fsync`` calls (for many
    small files that a crash may lose but never truncate)."""
    filename = osp.abspath(osp.expanduser(filename))
    dirname, base = osp.split(filename)
    os.makedirs(dirname, exist_ok=True)
    tmp = osp.join(dirname,
                   f'.{base}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp')
    try:
        with open(tmp, mode) as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, filename)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    if sync:
        _fsync_dir(dirname)


def atomic_write(obj, filename: str) -> None:
    """``torch.save(obj)`` to ``filename`` atomically (temp file + rename).

    Args:
        obj: What to save.
        filename (str): Local destination path; its directory is created.
    """
    _atomic_replace(filename, lambda f: torch.save(obj, f), 'xb')


def atomic_write_text(text: str, filename: str) -> None:
    """Write ``text`` to ``filename`` atomically (temp file + rename).

    Args:
        text (str): The content.
        filename (str): Local destination path; its directory is created.
    """
    _atomic_replace(filename, lambda f: f.write(text), 'x')


def atomic_write_stream(fileobj, filename: str) -> None:
    """Copy a binary stream to ``filename`` atomically (temp file + rename,
    no ``fsync``): a stream that fails half-way (a truncated archive)
    leaves no partial file.

    Args:
        fileobj: Readable binary stream.
        filename (str): Local destination path; its directory is created.
    """
    _atomic_replace(
        filename,
        lambda f: shutil.copyfileobj(fileobj, f, length=1 << 20),
        'xb',
        sync=False)


def atomic_save_figure(fig, filename: str, **kwargs) -> None:
    """``fig.savefig`` to ``filename`` atomically (temp file + rename).

    Args:
        fig (matplotlib.figure.Figure): The figure.
        filename (str): Local destination path; its directory is created.
            The format comes from its extension (``png`` when it has none).
        **kwargs: Passed to ``savefig`` (e.g. ``dpi``).
    """
    fmt = osp.splitext(filename)[1][1:].lower() or 'png'
    _atomic_replace(filename,
                    lambda f: fig.savefig(f, format=fmt, **kwargs), 'xb')


def _is_local(filename: str, backend_args: Optional[dict]) -> bool:
    from mmengine.fileio import get_file_backend
    from mmengine.fileio.backends import LocalBackend
    if filename.startswith('pavi://'):
        return False
    try:
        backend = get_file_backend(filename, backend_args=backend_args)
    except Exception:  # noqa: BLE001 - unknown prefix: leave it to mmengine
        return False
    return isinstance(backend, LocalBackend)


def atomic_save_checkpoint(checkpoint: dict,
                           filename: str,
                           file_client_args: Optional[dict] = None,
                           backend_args: Optional[dict] = None) -> None:
    """Drop-in for ``mmengine.runner.checkpoint.save_checkpoint`` that writes
    local files atomically; other back-ends use mmengine's function.

    Args:
        checkpoint (dict): The checkpoint.
        filename (str): Destination.
        file_client_args (dict, optional): Deprecated mmengine argument; when
            given, mmengine's own function is used. Defaults to None.
        backend_args (dict, optional): mmengine file back-end arguments.
            Defaults to None.
    """
    if file_client_args is None and _is_local(str(filename), backend_args):
        atomic_write(checkpoint, str(filename))
        return
    _ORIGINAL['save'](
        checkpoint,
        filename,
        file_client_args=file_client_args,
        backend_args=backend_args)


_ORIGINAL = {}


def patch_atomic_checkpoint_save() -> None:
    """Make every mmengine checkpoint save go through
    :func:`atomic_save_checkpoint` (idempotent)."""
    if 'atomic_save' in _APPLIED:
        return
    import mmengine.runner as runner_pkg
    import mmengine.runner.checkpoint as ckpt_mod
    import mmengine.runner.runner as runner_mod

    _ORIGINAL['save'] = ckpt_mod.save_checkpoint
    for module in (ckpt_mod, runner_mod, runner_pkg):
        module.save_checkpoint = atomic_save_checkpoint
    _APPLIED.add('atomic_save')


# ----------------------------------------------------------------------
# validation and resume fallback
def check_checkpoint(path: str, kind: str = 'resume') -> dict:
    """Verify that ``path`` is a complete, readable checkpoint.

    Checks, cheapest first: the file exists and is not empty; for torch's zip
    format, the zip directory is intact (a truncated file fails here) and the
    CRC-32 of every record matches (bit rot, a partly overwritten file --
    ``torch.load`` does not notice these); the file unpickles (tensor data
    memory-mapped, not copied); and for ``kind='resume'`` it is a dict with
    ``state_dict`` and a ``meta`` holding ``epoch`` and ``iter``.

    Args:
        path (str): Local checkpoint file.
        kind (str): ``'resume'`` (everything ``--resume`` needs) or
            ``'weights'`` (any loadable file, e.g. for ``load_from``).
            Defaults to ``'resume'``.

    Returns:
        dict: The checkpoint's ``meta`` (empty if it has none).

    Raises:
        ValueError: If ``kind`` is not one of the two values.
        CheckpointCorruptError: Naming the file and the failed check.
    """
    if kind not in ('resume', 'weights'):
        raise ValueError(
            f"check_checkpoint: kind={kind!r} must be 'resume' or 'weights'.")

    def bad(reason, cause=None):
        raise CheckpointCorruptError(
            f'checkpoint {path!r} is not usable: {reason}.',
            path=path,
            reason=reason) from cause

    if not osp.isfile(path):
        bad('no such file')
    if osp.getsize(path) == 0:
        bad('the file is empty (0 bytes)')
    is_zip = zipfile.is_zipfile(path)
    if is_zip:
        try:
            with zipfile.ZipFile(path) as zf:
                first_bad = zf.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
            bad(f'truncated or damaged zip archive ({err})', err)
        if first_bad is not None:
            bad(f'CRC mismatch in record {first_bad!r} (the file is '
                'corrupt)')
    try:
        ckpt = torch.load(
            path, map_location='cpu', weights_only=False, mmap=is_zip)
    except Exception as err:  # noqa: BLE001 - any unpickling failure
        reason = 'cannot be unpickled' if is_zip else \
            'truncated or damaged file'
        bad(f'{reason} ({type(err).__name__}: {err})', err)
    meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
    if kind == 'resume':
        if not isinstance(ckpt, dict) or 'state_dict' not in ckpt:
            bad('it is not an mmengine checkpoint (no `state_dict` key)')
        if not isinstance(meta, dict) or not ('epoch' in meta
                                              and 'iter' in meta):
            bad('its `meta` has no `epoch`/`iter`, so training cannot be '
                'resumed from it')
    return dict(meta) if isinstance(meta, dict) else {}


def _scan(dirname: str) -> List[Tuple[str, int, str]]:
    """``(kind, step, path)`` of ``epoch_N.pth`` / ``iter_N.pth`` files."""
    found = []
    if not osp.isdir(dirname):
        return found
    for name in os.listdir(dirname):
        m = _CKPT_RE.match(name)
        if m:
            path = osp.join(dirname, name)
            found.append((m.group(1), int(m.group(2)), path))
    return found


def remove_stale_temp_files(dirname: str, logger=None) -> List[str]:
    """Remove temporary files an interrupted :func:`atomic_write` left.

    Returns:
        list[str]: The removed paths.
    """
    from mmengine.logging import print_log
    removed = []
    for path in sorted(glob.glob(osp.join(dirname, _TMP_GLOB))):
        try:
            os.remove(path)
        except FileNotFoundError:  # another rank removed it
            continue
        removed.append(path)
    if removed:
        print_log(
            f'Removed {len(removed)} incomplete checkpoint temp file(s) left '
            f'by an interrupted save: {removed}',
            logger=logger or 'current',
            level=logging.WARNING)
    return removed


def find_resumable_checkpoint(work_dir: str,
                              logger=None,
                              clean_temp: bool = True) -> Optional[str]:
    """The checkpoint ``--resume`` (auto) should use, after validating it.

    Args:
        work_dir (str): The run's work directory (holds ``last_checkpoint``).
        logger: mmengine logger or name. Defaults to None ('current').
        clean_temp (bool): Remove stale temp files of interrupted saves.
            Defaults to True.

    Returns:
        str | None: A checkpoint that passed :func:`check_checkpoint`, or
        None if the directory has no ``last_checkpoint`` and no checkpoints
        (a fresh run).

    Raises:
        CheckpointCorruptError: If checkpoints exist but none is usable.
    """
    from mmengine.logging import print_log
    logger = logger or 'current'
    record = osp.join(work_dir, 'last_checkpoint')
    recorded = None
    record_problem = None
    if osp.isfile(record):
        try:
            with open(record) as f:
                recorded = f.read().strip() or None
            if recorded is None:
                record_problem = f'{record!r} is empty'
        except (OSError, UnicodeDecodeError) as err:
            record_problem = f'{record!r} cannot be read ({err})'

    dirs = [work_dir]
    if recorded:
        rec_dir = osp.dirname(recorded) or work_dir
        if osp.abspath(rec_dir) != osp.abspath(work_dir):
            dirs.append(rec_dir)
    found = {}
    for d in dirs:
        if clean_temp:
            from mmengine.dist import is_main_process
            if is_main_process():
                remove_stale_temp_files(d, logger)
        for kind, step, path in _scan(d):
            found[osp.abspath(path)] = (kind, step, path)
    if recorded is None and record_problem is None and not found:
        print_log(
            f'No checkpoint found in {work_dir!r}: training starts from '
            'scratch.',
            logger=logger)
        return None

    rec_match = _CKPT_RE.match(osp.basename(recorded)) if recorded else None
    if rec_match:
        kind = rec_match.group(1)
    else:
        kinds = {k for k, _, _ in found.values()}
        kind = 'epoch' if 'epoch' in kinds else 'iter'
    same_kind = sorted((v for v in found.values() if v[0] == kind),
                       key=lambda v: v[1],
                       reverse=True)
    rec_abs = osp.abspath(recorded) if recorded else None
    if rec_match and osp.isfile(recorded):
        # A higher-numbered checkpoint written *before* the recorded one is
        # left over from an earlier run in this work_dir, not one this run
        # saved just before being stopped: never resume from it.
        rec_step, rec_time = int(rec_match.group(2)), osp.getmtime(recorded)
        stale = [
            v for v in same_kind
            if v[1] > rec_step and osp.getmtime(v[2]) < rec_time
        ]
        if stale:
            print_log(
                f'Ignoring {len(stale)} checkpoint(s) numbered after the '
                f'recorded {recorded!r} but written before it (left by an '
                f'earlier run in this work_dir?), e.g. {stale[0][2]!r}.',
                logger=logger,
                level=logging.WARNING)
            same_kind = [v for v in same_kind if v not in stale]
    candidates = [v[2] for v in same_kind]
    if rec_abs and rec_abs not in {osp.abspath(c) for c in candidates}:
        # A custom filename template or a missing file: try it first.
        candidates.insert(0, recorded)

    rejected = {}
    for path in candidates:
        try:
            check_checkpoint(path, kind='resume')
        except CheckpointCorruptError as err:
            rejected[osp.abspath(path)] = (path, err.reason)
            print_log(
                f'Skipping checkpoint {path!r}: {err.reason}.',
                logger=logger,
                level=logging.WARNING)
            continue
        if rec_abs is None:
            why = record_problem or f'{record!r} does not exist'
            print_log(
                f'{why}; resuming from the newest good checkpoint {path!r}.',
                logger=logger,
                level=logging.WARNING)
        elif osp.abspath(path) != rec_abs:
            if rec_abs in rejected:
                print_log(
                    f'The latest checkpoint {recorded!r} is not usable '
                    f'({rejected[rec_abs][1]}); falling back to the previous '
                    f'good checkpoint {path!r}.',
                    logger=logger,
                    level=logging.WARNING)
            else:
                print_log(
                    f'{path!r} is newer than the checkpoint recorded in '
                    f'{record!r} ({recorded!r}): the previous run stopped '
                    'right after saving it. Resuming from it.',
                    logger=logger,
                    level=logging.WARNING)
        return path

    listing = '; '.join(f'{p!r}: {r}' for p, r in rejected.values())
    raise CheckpointCorruptError(
        f'Cannot resume in {work_dir!r}: no usable checkpoint '
        f'(last_checkpoint -> {recorded!r}'
        f'{"; " + record_problem if record_problem else ""}). Checked: '
        f'{listing or "no checkpoint files found"}. Delete the broken files '
        'to start from scratch, or pass --resume PATH with a good '
        'checkpoint.',
        path=recorded,
        reason='no usable checkpoint')


def _load_or_resume(self) -> None:
    """``Runner.load_or_resume`` with a validated auto-resume and checked
    explicit files."""
    if self._has_loaded:
        return None
    if self._resume and self._load_from is None:
        resume_from = find_resumable_checkpoint(self.work_dir, self.logger)
        if resume_from is None:
            return None
        self.logger.info(f'Auto resumed from the checkpoint {resume_from}.')
        self.resume(resume_from)
        self._has_loaded = True
        return None
    path = self._load_from
    if path is not None and osp.isfile(str(path)):
        # The user chose this file: no fallback, but name it if it is bad.
        check_checkpoint(
            str(path), kind='resume' if self._resume else 'weights')
    return _ORIGINAL['load_or_resume'](self)


def patch_resume_fallback() -> None:
    """Route ``Runner.load_or_resume`` through the validated resume
    (idempotent)."""
    if 'resume' in _APPLIED:
        return
    from mmengine.runner import Runner
    _ORIGINAL['load_or_resume'] = Runner.load_or_resume
    Runner.load_or_resume = _load_or_resume
    _APPLIED.add('resume')
