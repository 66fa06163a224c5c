import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint

from mergemix_mm.utils import compat


def test_apply_all_idempotent():
    first = compat.apply_all()
    assert compat.apply_all() == first
    assert {'ckpt', 'dist', 'workers'} <= set(first)


def test_trusted_local_checkpoint_roundtrip(tmp_path):
    # An mmengine-style checkpoint with objects torch>=2.6 refuses by default.
    ckpt = dict(
        state_dict={'w': torch.ones(2)},
        message_hub=dict(
            log_scalars={'loss': HistoryBuffer([1.0, 2.0], [1, 1])}),
        meta=dict(seed=np.int64(3), arr=np.arange(3)))
    path = str(tmp_path / 'epoch_1.pth')
    torch.save(ckpt, path)
    with pytest.raises(Exception):
        torch.load(path)  # the torch default (weights_only=True) fails
    loaded = _load_checkpoint(path, map_location='cpu')
    assert torch.equal(loaded['state_dict']['w'], torch.ones(2))
    assert loaded['meta']['seed'] == 3


def test_missing_checkpoint_names_file(tmp_path):
    missing = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        _load_checkpoint(missing)


def test_url_scheme_untouched():
    loader = CheckpointLoader._get_checkpoint_loader('https://x/y.pth')
    assert loader.__name__ == 'load_from_http'


def test_cpu_ddp_device_ids_dropped(monkeypatch):
    from mmengine.model.wrappers import MMDistributedDataParallel
    seen = {}

    def fake_ddp_init(self, module, *args, **kwargs):
        seen.update(kwargs)

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(torch.nn.parallel.DistributedDataParallel,
                        '__init__', fake_ddp_init)
    MMDistributedDataParallel(module=torch.nn.Linear(2, 2), device_ids=[0])
    assert seen['device_ids'] is None


def test_persistent_workers_dropped_without_workers():
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    init_default_scope('mmpretrain')
    cfg = dict(
        batch_size=2, num_workers=0, persistent_workers=True,
        dataset=dict(type='DigitsDataset', split='test',
                     pipeline=[dict(type='PackInputs')]),
        sampler=dict(type='DefaultSampler', shuffle=False))
    loader = Runner.build_dataloader(cfg)
    assert len(loader) == 225
    assert cfg['persistent_workers'] is True  # caller's dict untouched


def test_persistent_workers_kept_with_workers():
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    init_default_scope('mmpretrain')
    cfg = dict(
        batch_size=2, num_workers=1, persistent_workers=True,
        dataset=dict(type='DigitsDataset', split='test',
                     pipeline=[dict(type='PackInputs')]),
        sampler=dict(type='DefaultSampler', shuffle=False))
    loader = Runner.build_dataloader(cfg)
    assert loader.persistent_workers is True


@pytest.mark.parametrize('content', [b'', b'\x80\x02'], ids=['empty', 'cut'])
def test_empty_or_cut_checkpoint_is_reported_as_corrupt(tmp_path, content):
    from mergemix_mm.utils.checkpoint_safety import CheckpointCorruptError
    path = tmp_path / 'bad.pth'
    path.write_bytes(content)
    with pytest.raises(CheckpointCorruptError, match='bad.pth'):
        compat.load_local_checkpoint_trusted(str(path))
