"""Corrupted images in an ImageNet-style folder: named by path, or skipped
with a logged running count."""
import logging
import os.path as osp

import pytest
from mmengine.logging import MMLogger
from mmpretrain.registry import DATASETS, TRANSFORMS

import mergemix_mm  # noqa: F401
from mergemix_mm.datasets import ImageLoadError, SafeLoadImageFromFile

from dataset_archives import jpeg_bytes

PIPE = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='ResizeEdge', scale=8, edge='short'),
    dict(type='CenterCrop', crop_size=8),
    dict(type='PackInputs')
]


@pytest.fixture
def folder_with_bad_images(tmp_path):
    """data_root/{train,val}/<class>/ with one garbage and one empty JPEG."""
    root = tmp_path / 'imagenet_like'
    good, bad = [], []
    for split in ('train', 'val'):
        for c in ('n01', 'n02'):
            d = root / split / c
            d.mkdir(parents=True)
            for k in range(3):
                p = d / f'{c}_{k}.JPEG'
                p.write_bytes(jpeg_bytes(k))
                good.append(str(p))
    garbage = root / 'train' / 'n01' / 'n01_9_garbage.JPEG'
    garbage.write_bytes(b'this is not a JPEG file' * 10)
    empty = root / 'train' / 'n02' / 'n02_9_empty.JPEG'
    empty.write_bytes(b'')
    bad += [str(garbage), str(empty)]
    (root / 'val' / 'n02' / 'n02_9_garbage.JPEG').write_bytes(b'\xff\xd8xx')
    return str(root), bad


class _Capture(logging.Handler):

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings_log():
    logger = MMLogger.get_current_instance()
    handler = _Capture()
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


def _build(root, split, **kwargs):
    return DATASETS.build(
        dict(type='ImageNetLocal', data_root=root, split=split,
             metainfo=dict(classes=('n01', 'n02')), pipeline=PIPE, **kwargs))


def _index_of(ds, path):
    return [ds.get_data_info(i)['img_path'] for i in range(len(ds))].index(
        path)


@pytest.mark.parametrize('which', [0, 1], ids=['garbage', 'empty'])
def test_bad_image_error_names_the_path(folder_with_bad_images, which):
    root, bad = folder_with_bad_images
    ds = _build(root, 'train')
    with pytest.raises(ImageLoadError) as info:
        ds[_index_of(ds, bad[which])]
    assert repr(bad[which]) in str(info.value)
    assert 'skip_bad_samples=True' in str(info.value)
    assert info.value.path == bad[which]


def test_skip_bad_samples_logs_path_and_running_count(folder_with_bad_images,
                                                      warnings_log):
    root, bad = folder_with_bad_images
    ds = _build(root, 'train', skip_bad_samples=True)
    loader = [t for t in ds.pipeline.transforms
              if isinstance(t, SafeLoadImageFromFile)][0]
    for path in bad:
        out = ds[_index_of(ds, path)]  # another, readable sample comes back
        assert tuple(out['inputs'].shape) == (3, 8, 8)
        assert out['data_samples'].img_path not in bad
    skipped = [m for m in warnings_log if 'Skipped unreadable image' in m]
    # the random replacement may itself hit the other bad image, so there
    # are at least two skips, each logged with its path and running count
    assert len(skipped) == loader.num_skipped >= 2
    for path in bad:
        assert any(repr(path) in m for m in skipped)
    for n, msg in enumerate(skipped, start=1):
        assert f'{n} image(s) skipped so far in the main process' in msg
    num_skipped = loader.num_skipped
    # every readable sample is still served unchanged
    good = [i for i in range(len(ds))
            if ds.get_data_info(i)['img_path'] not in bad]
    for i in good:
        assert ds[i]['data_samples'].img_path == ds.get_data_info(i)[
            'img_path']
    assert loader.num_skipped == num_skipped


def test_skip_is_not_applied_to_evaluation_splits(folder_with_bad_images,
                                                  warnings_log):
    root, _ = folder_with_bad_images
    ds = _build(root, 'val', skip_bad_samples=True)
    assert any('ignored for evaluation data' in m for m in warnings_log)
    bad_val = osp.join(root, 'val', 'n02', 'n02_9_garbage.JPEG')
    with pytest.raises(ImageLoadError, match='n02_9_garbage'):
        ds[_index_of(ds, bad_val)]


def test_skip_needs_the_safe_loader(folder_with_bad_images):
    root, _ = folder_with_bad_images
    with pytest.raises(ValueError, match='SafeLoadImageFromFile'):
        DATASETS.build(
            dict(type='ImageNetLocal', data_root=root, split='train',
                 metainfo=dict(classes=('n01', 'n02')),
                 pipeline=[dict(type='LoadImageFromFile')],
                 skip_bad_samples=True))


def test_transform_max_skipped_and_missing_file(tmp_path):
    garbage = tmp_path / 'bad.jpg'
    garbage.write_bytes(b'nope')
    t = TRANSFORMS.build(dict(type='SafeLoadImageFromFile', skip_bad=True,
                              max_skipped=1))
    assert t(dict(img_path=str(garbage))) is None
    with pytest.raises(ImageLoadError, match='max_skipped=1'):
        t(dict(img_path=str(garbage)))
    strict = TRANSFORMS.build(dict(type='SafeLoadImageFromFile'))
    missing = str(tmp_path / 'missing.jpg')
    with pytest.raises(ImageLoadError, match='missing.jpg'):
        strict(dict(img_path=missing))
    good = tmp_path / 'good.jpg'
    good.write_bytes(jpeg_bytes(5))
    assert strict(dict(img_path=str(good)))['img'].shape == (20, 24, 3)
    with pytest.raises(TypeError, match='skip_bad'):
        SafeLoadImageFromFile(skip_bad='yes')


def test_dataloader_epoch_survives_bad_images(folder_with_bad_images,
                                              warnings_log):
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    root, bad = folder_with_bad_images
    cfg = dict(
        batch_size=3,
        num_workers=0,
        dataset=dict(type='ImageNetLocal', data_root=root, split='train',
                     metainfo=dict(classes=('n01', 'n02')), pipeline=PIPE,
                     skip_bad_samples=True),
        sampler=dict(type='DefaultSampler', shuffle=False))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        loader = Runner.build_dataloader(cfg, seed=0)
    seen = []
    for batch in loader:
        seen += [s.img_path for s in batch['data_samples']]
    assert len(seen) == 8 and not set(seen) & set(bad)
    assert sum('Skipped unreadable image' in m for m in warnings_log) >= 2


def test_truncated_jpeg_rejected_with_pillow_backend(tmp_path):
    import cv2
    import numpy as np
    img = (np.random.RandomState(0).rand(64, 64, 3) * 255).astype(np.uint8)
    data = cv2.imencode('.jpg', img)[1].tobytes()
    path = tmp_path / 'truncated.jpg'
    path.write_bytes(data[:len(data) * 3 // 4])
    t = TRANSFORMS.build(
        dict(type='SafeLoadImageFromFile', imdecode_backend='pillow'))
    with pytest.raises(ImageLoadError, match='truncated.jpg'):
        t(dict(img_path=str(path)))
    (tmp_path / 'full.jpg').write_bytes(data)
    assert t(dict(img_path=str(tmp_path / 'full.jpg')))['img'].shape == \
        (64, 64, 3)


def test_skip_is_not_applied_to_test_mode_datasets(folder_with_bad_images,
                                                   warnings_log):
    root, bad = folder_with_bad_images
    ds = _build(root, 'train', skip_bad_samples=True, test_mode=True)
    assert any('ignored for evaluation data' in m for m in warnings_log)
    with pytest.raises(ImageLoadError, match='n01_9_garbage'):
        ds[_index_of(ds, bad[0])]
