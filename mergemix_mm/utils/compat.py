"""Small, idempotent compatibility fixes for mmengine 0.10.7 on current torch.

Every fix here addresses a verified breakage (each tested in
``tests/test_foundation/test_compat.py``):

* **Trusted local checkpoints.** torch >= 2.6 defaults ``torch.load`` to
  ``weights_only=True``; mmengine checkpoints pickle ``HistoryBuffer`` and
  numpy objects in ``message_hub``, so ``--resume``, ``load_from``,
  ``init_cfg=dict(type='Pretrained')`` and ``tools/test.py`` fail. We
  re-register mmengine's local-path scheme with a loader that passes
  ``weights_only=False`` for *local files only*; URL schemes are untouched.
* **CPU distributed.** mmengine calls ``torch.cuda.set_device`` unconditionally
  and hard-codes DDP ``device_ids``. Without CUDA we initialise the process
  group with ``gloo`` and build DDP with ``device_ids=None``.
* **persistent_workers.** ``DataLoader`` raises when
  ``persistent_workers=True`` and ``num_workers == 0``; the option is
  dropped in that case.
* **Crash-safe checkpoints** (:mod:`.checkpoint_safety`): atomic checkpoint
  writes, and ``--resume`` that falls back past a truncated checkpoint.

:func:`apply_all` is called on ``import mergemix_mm``.
"""
import copy
import functools
import os.path as osp
import pickle
from typing import Any, Dict

import torch

__all__ = [
    'apply_all', 'load_local_checkpoint_trusted', 'patch_checkpoint_loader',
    'patch_cpu_distributed', 'patch_persistent_workers'
]

_APPLIED = set()


def load_local_checkpoint_trusted(filename: str, map_location=None) -> Any:
    """Load a local, trusted mmengine checkpoint with full unpickling.

    Args:
        filename (str): Local checkpoint path.
        map_location: Same as :func:`torch.load`. Defaults to None.

    Returns:
        Any: The loaded checkpoint.

    Raises:
        FileNotFoundError: If ``filename`` is not an existing file.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(
            f'checkpoint file {filename!r} can not be found.')
    try:
        return torch.load(
            filename, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:
        # torch's message ("failed finding central directory") omits the file.
        from .checkpoint_safety import CheckpointCorruptError
        raise CheckpointCorruptError(
            f'checkpoint {filename!r} cannot be loaded ({err}); it is '
            'truncated or corrupt.', path=filename) from err


def patch_checkpoint_loader() -> None:
    """Register :func:`load_local_checkpoint_trusted` for local paths."""
    if 'ckpt' in _APPLIED:
        return
    from mmengine.runner.checkpoint import CheckpointLoader

    CheckpointLoader.register_scheme(prefixes='', force=True)(
        load_local_checkpoint_trusted)
    _APPLIED.add('ckpt')


def _init_dist_pytorch_cpu_aware(original, backend, init_backend='torch',
                                 **kwargs):
    """Like mmengine's ``_init_dist_pytorch`` but usable without CUDA."""
    if torch.cuda.is_available():
        return original(backend, init_backend=init_backend, **kwargs)
    import torch.distributed as torch_dist
    from mmengine.logging import print_log
    if backend != 'gloo':
        print_log(
            f'CUDA is not available: using the gloo backend instead of '
            f'{backend!r} for distributed training on CPU.',
            logger='current')
    if init_backend != 'torch':
        raise ValueError(
            f'dist_cfg.init_backend={init_backend!r} needs GPUs; only '
            "'torch' is supported on CPU.")
    torch_dist.init_process_group(backend='gloo', **kwargs)


def patch_cpu_distributed() -> None:
    """Make ``--launcher pytorch`` work on CPU-only machines (gloo, no
    ``set_device``, DDP with ``device_ids=None``)."""
    if 'dist' in _APPLIED:
        return
    import mmengine.dist.utils as dist_utils
    from mmengine.model.wrappers import MMDistributedDataParallel

    original = dist_utils._init_dist_pytorch
    dist_utils._init_dist_pytorch = functools.partial(
        _init_dist_pytorch_cpu_aware, original)

    ddp_init = MMDistributedDataParallel.__init__

    @functools.wraps(ddp_init)
    def __init__(self, module, *args, **kwargs):
        if not torch.cuda.is_available():
            kwargs['device_ids'] = None
            kwargs.pop('output_device', None)
        ddp_init(self, module, *args, **kwargs)

    MMDistributedDataParallel.__init__ = __init__
    _APPLIED.add('dist')


def patch_persistent_workers() -> None:
    """Drop ``persistent_workers`` from dataloader configs with no workers."""
    if 'workers' in _APPLIED:
        return
    from mmengine.runner import Runner

    original = Runner.build_dataloader

    @functools.wraps(original)
    def build_dataloader(dataloader, *args, **kwargs):
        if isinstance(dataloader, dict) and dataloader.get(
                'persistent_workers', False) and not dataloader.get(
                    'num_workers', 0):
            dataloader = copy.copy(dataloader)
            dataloader.pop('persistent_workers')
        return original(dataloader, *args, **kwargs)

    Runner.build_dataloader = staticmethod(build_dataloader)
    _APPLIED.add('workers')


def apply_all() -> Dict[str, bool]:
    """Apply every compatibility fix (idempotent).

    Returns:
        dict: Which fixes are active.
    """
    patch_checkpoint_loader()
    patch_cpu_distributed()
    patch_persistent_workers()
    # Crash-safe checkpoints (issue 10): see checkpoint_safety.py.
    from .checkpoint_safety import (patch_atomic_checkpoint_save,
                                    patch_resume_fallback)
    patch_atomic_checkpoint_save()
    patch_resume_fallback()
    _APPLIED.update(('atomic_save', 'resume'))
    return {name: True for name in sorted(_APPLIED)}
