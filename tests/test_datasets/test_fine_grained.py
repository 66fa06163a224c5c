import os
import os.path as osp
import shutil

import pytest
from mmengine.config import Config
from mmpretrain.datasets.categories import FGVCAIRCRAFT_CATEGORIES
from mmpretrain.registry import DATASETS

import mergemix_mm  # noqa: F401
from mergemix_mm.datasets import (check_aircraft_layout, check_cub_layout,
                                  check_stanford_cars_layout)
from mergemix_mm.datasets.layout import DatasetLayoutError

from dataset_archives import REPO, load_tool

CFG_DIR = osp.join(REPO, 'configs', '_base_', 'datasets')
PIPE = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='ResizeEdge', scale=16, edge='short'),
    dict(type='CenterCrop', crop_size=16),
    dict(type='PackInputs')
]


def _labels(ds):
    return [(osp.basename(ds.get_data_info(i)['img_path']),
             ds.get_data_info(i)['gt_label']) for i in range(len(ds))]


# ----------------------------------------------------------------------------
# CUB-200-2011
# ----------------------------------------------------------------------------
def test_cub_converter_dataset_and_check(tmp_path, cub_tgz, capsys):
    archive, samples = cub_tgz()
    out = str(tmp_path / 'CUB_200_2011')
    tool = load_tool('prepare_cub')
    assert tool.prepare_cub(out, archive=archive) == []
    assert osp.isfile(osp.join(out, 'attributes.txt'))  # top-level member
    for split, is_train in (('train', True), ('test', False)):
        ds = DATASETS.build(dict(type='CUBLocal', data_root=out, split=split,
                                 pipeline=PIPE))
        expected = [(osp.basename(rel), cls - 1)
                    for _, rel, cls, t in samples if t == is_train]
        assert _labels(ds) == expected
        assert tuple(ds[0]['inputs'].shape) == (3, 16, 16)
    # --check names a split whose images are gone
    for _, rel, _, t in samples:
        if not t:
            os.remove(osp.join(out, 'images', rel))
    assert tool.main(['--check', out]) == 1
    printed = capsys.readouterr().out
    assert "split 'test': 3 listed image(s) do not exist" in printed
    assert "split 'train'" not in printed


def test_cub_missing_annotation_names_path(tmp_path, cub_tgz):
    archive, _ = cub_tgz()
    out = str(tmp_path / 'cub')
    load_tool('prepare_cub').prepare_cub(out, archive=archive)
    os.remove(osp.join(out, 'train_test_split.txt'))
    with pytest.raises(DatasetLayoutError) as info:
        DATASETS.build(dict(type='CUBLocal', data_root=out, split='test'))
    assert repr(osp.join(out, 'train_test_split.txt')) in str(info.value)
    assert 'prepare_cub.py' in str(info.value)
    assert any('train_test_split.txt' in p for p in check_cub_layout(out))


@pytest.mark.parametrize('shift', [-1, 200])
def test_cub_class_ids_outside_1_to_200_are_refused(tmp_path, cub_tgz,
                                                    capsys, shift):
    """A 0-based image_class_labels.txt (or ids past 200) would shift or
    overflow every label silently: --check and the dataset name the file."""
    archive, _ = cub_tgz()
    out = str(tmp_path / 'cub')
    tool = load_tool('prepare_cub')
    tool.prepare_cub(out, archive=archive)
    path = osp.join(out, 'image_class_labels.txt')
    lines = open(path).read().split('\n')
    with open(path, 'w') as f:
        f.write('\n'.join(
            f'{i} {int(c) + shift}' if shift < 0 else
            (f'{i} {c}' if n else f'{i} {int(c) + shift}')
            for n, (i, c) in enumerate(line.split() for line in lines
                                       if line.strip())) + '\n')
    assert tool.main(['--check', out]) == 1
    assert 'outside 1..200' in capsys.readouterr().out
    with pytest.raises(ValueError, match=r'outside 1\.\.200') as info:
        DATASETS.build(dict(type='CUBLocal', data_root=out, split='train'))
    assert repr(path) in str(info.value)


# ----------------------------------------------------------------------------
# Stanford Cars
# ----------------------------------------------------------------------------
def test_cars_split_layout(tmp_path, cars_files, capsys):
    data = cars_files()
    files = data['files']
    out = str(tmp_path / 'cars')
    tool = load_tool('prepare_stanford_cars')
    inputs = [files[k] for k in ('cars_test_annos_withlabels.mat',
                                 'cars_train.tgz', 'car_devkit.tgz',
                                 'cars_test.tgz')]
    assert tool.prepare_stanford_cars(out, inputs) == []
    assert osp.isfile(
        osp.join(out, 'devkit', 'cars_test_annos_withlabels.mat'))
    for split in ('train', 'test'):
        ds = DATASETS.build(dict(type='StanfordCarsLocal', data_root=out,
                                 split=split, pipeline=PIPE))
        assert _labels(ds) == [(f, c - 1) for f, c in data[split]]
        assert tuple(ds[len(ds) - 1]['inputs'].shape) == (3, 16, 16)
    # the test labels file is missing: --check and the dataset name it
    os.remove(osp.join(out, 'devkit', 'cars_test_annos_withlabels.mat'))
    assert tool.main(['--check', out]) == 1
    printed = capsys.readouterr().out
    assert "split 'test': missing annotation file" in printed
    assert "split 'train'" not in printed
    DATASETS.build(dict(type='StanfordCarsLocal', data_root=out))
    with pytest.raises(FileNotFoundError) as info:
        DATASETS.build(dict(type='StanfordCarsLocal', data_root=out,
                            split='test'))
    assert 'cars_test_annos_withlabels.mat' in str(info.value)
    assert 'prepare_stanford_cars.py' in str(info.value)


def test_cars_single_file_layout(tmp_path, cars_files):
    data = cars_files()
    out = str(tmp_path / 'cars_a')
    tool = load_tool('prepare_stanford_cars')
    assert tool.prepare_stanford_cars(
        out, [data['files']['car_ims.tgz'], data['files']['cars_annos.mat']]
    ) == []
    for split, flag in (('train', 0), ('test', 1)):
        ds = DATASETS.build(dict(type='StanfordCarsLocal', data_root=out,
                                 split=split))
        assert _labels(ds) == [(osp.basename(p), c - 1)
                               for p, c, t in data['allims'] if t == flag]
    shutil.rmtree(osp.join(out, 'car_ims'))
    assert 'car_ims' in check_stanford_cars_layout(out)[0]


# ----------------------------------------------------------------------------
# FGVC-Aircraft
# ----------------------------------------------------------------------------
def test_aircraft_converter_dataset_and_check(tmp_path, aircraft_tgz, capsys):
    archive, ids = aircraft_tgz()
    out = str(tmp_path / 'fgvc-aircraft-2013b')
    tool = load_tool('prepare_aircraft')
    assert tool.prepare_aircraft(out, archive=archive) == []
    for split in ('trainval', 'test'):
        ds = DATASETS.build(dict(type='FGVCAircraftLocal', data_root=out,
                                 split=split, pipeline=PIPE))
        assert _labels(ds) == [(f'{i}.jpg', FGVCAIRCRAFT_CATEGORIES.index(v))
                               for i, v in ids[split]]
        assert tuple(ds[0]['inputs'].shape) == (3, 16, 16)
    os.remove(osp.join(out, 'data', 'images_variant_val.txt'))
    assert tool.main(['--check', out]) == 1
    printed = capsys.readouterr().out
    assert "split 'val': missing annotation file" in printed
    assert "split 'test'" not in printed
    assert tool.main(['--check', out, '--splits', 'trainval', 'test']) == 0
    with pytest.raises(FileNotFoundError) as info:
        DATASETS.build(dict(type='FGVCAircraftLocal', data_root=out,
                            split='val'))
    assert repr(osp.join(out, 'data', 'images_variant_val.txt')) in \
        str(info.value)


def test_aircraft_unknown_variant_is_reported(tmp_path, aircraft_tgz):
    archive, _ = aircraft_tgz()
    out = str(tmp_path / 'air')
    load_tool('prepare_aircraft').prepare_aircraft(out, archive=archive)
    with open(osp.join(out, 'data', 'images_variant_test.txt'), 'a') as f:
        f.write('1234567 Concorde\n')
    problems = check_aircraft_layout(out, ['test'])
    assert len(problems) == 1 and 'Concorde' in problems[0]


@pytest.mark.parametrize('name,cls_name,root_key', [
    ('cub_bs16_224px.py', 'CUBLocal', 'cub'),
    ('stanfordcars_bs16_224px.py', 'StanfordCarsLocal', 'cars'),
    ('aircraft_bs16_224px.py', 'FGVCAircraftLocal', 'air'),
])
def test_fine_grained_configs(tmp_path, name, cls_name, root_key, cub_tgz,
                              cars_files, aircraft_tgz):
    cfg = Config.fromfile(osp.join(CFG_DIR, name))
    assert cfg.train_dataloader.dataset.type == cls_name
    assert cfg.train_dataloader.batch_size == 16
    out = str(tmp_path / root_key)
    if root_key == 'cub':
        load_tool('prepare_cub').prepare_cub(out, archive=cub_tgz()[0])
    elif root_key == 'cars':
        f = cars_files()['files']
        load_tool('prepare_stanford_cars').prepare_stanford_cars(
            out, [f['car_ims.tgz'], f['cars_annos.mat']])
    else:
        load_tool('prepare_aircraft').prepare_aircraft(
            out, archive=aircraft_tgz()[0])
    for key in ('train_dataloader', 'val_dataloader'):
        dcfg = cfg[key].dataset.copy()
        dcfg['data_root'] = out
        ds = DATASETS.build(dcfg)
        assert tuple(ds[0]['inputs'].shape) == (3, 224, 224)


def _skips_bad(ds):
    from mergemix_mm.datasets import SafeLoadImageFromFile
    return [t.skip_bad for t in ds.pipeline.transforms
            if isinstance(t, SafeLoadImageFromFile)]


def test_skip_bad_samples_only_on_training_splits(tmp_path, cub_tgz,
                                                  cars_files, aircraft_tgz):
    cub = str(tmp_path / 'cub')
    load_tool('prepare_cub').prepare_cub(cub, archive=cub_tgz()[0])
    cars = str(tmp_path / 'cars')
    files = cars_files()['files']
    load_tool('prepare_stanford_cars').prepare_stanford_cars(
        cars, [files['car_ims.tgz'], files['cars_annos.mat']])
    air = str(tmp_path / 'air')
    load_tool('prepare_aircraft').prepare_aircraft(
        air, archive=aircraft_tgz()[0])
    cases = [('CUBLocal', cub, 'train', True),
             ('CUBLocal', cub, 'test', False),
             ('StanfordCarsLocal', cars, 'train', True),
             ('StanfordCarsLocal', cars, 'test', False),
             ('FGVCAircraftLocal', air, 'train', True),
             ('FGVCAircraftLocal', air, 'trainval', True),
             ('FGVCAircraftLocal', air, 'val', False),
             ('FGVCAircraftLocal', air, 'test', False)]
    for cls_name, root, split, skips in cases:
        ds = DATASETS.build(dict(type=cls_name, data_root=root, split=split,
                                 pipeline=PIPE, skip_bad_samples=True))
        assert _skips_bad(ds) == [skips], (cls_name, split)
