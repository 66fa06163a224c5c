import os
import os.path as osp
import shutil

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmpretrain.registry import DATASETS

import mergemix_mm  # noqa: F401
from mergemix_mm.datasets import check_imagenet_layout
from mergemix_mm.datasets.layout import DatasetLayoutError

from dataset_archives import REPO, load_tool

CFG = osp.join(REPO, 'configs', '_base_', 'datasets',
               'imagenet_bs256_swin_224.py')
PIPE = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='ResizeEdge', scale=16, edge='short'),
    dict(type='CenterCrop', crop_size=16),
    dict(type='PackInputs')
]


@pytest.fixture
def prepared(tmp_path, imagenet_archives):
    arch = imagenet_archives()
    out = str(tmp_path / 'imagenet')
    problems = load_tool('prepare_imagenet').prepare_imagenet(
        out,
        train_tar=arch['train_tar'],
        val_tar=arch['val_tar'],
        devkit=arch['devkit'])
    assert problems == []
    return out, arch


def _read(path):
    with open(path) as f:
        return [ln.split() for ln in f.read().splitlines()]


def test_converter_from_official_tars_and_devkit(prepared):
    out, arch = prepared
    wnids = arch['wnids']
    assert _read(osp.join(out, 'meta', 'classes.txt')) == [[w] for w in wnids]
    train = _read(osp.join(out, 'meta', 'train.txt'))
    assert len(train) == len(wnids) * arch['per_class']
    for rel, label in train:
        assert rel.split('/')[0] == wnids[int(label)]
        assert osp.isfile(osp.join(out, 'train', rel))
    val = dict(_read(osp.join(out, 'meta', 'val.txt')))
    # labels follow the devkit ground truth (ILSVRC2012_IDs are not in wnid
    # order, so a wrong mapping would give other labels)
    assert len(val) == len(arch['val_truth'])
    for name, wnid in arch['val_truth'].items():
        assert val[f'{wnid}/{name}'] == str(wnids.index(wnid))


def test_dataset_builds_and_loads(prepared):
    out, arch = prepared
    ds = DATASETS.build(dict(type='ImageNetLocal', data_root=out,
                             split='val', pipeline=PIPE))
    assert len(ds) == len(arch['val_truth'])
    # 3 classes != 1000: names come from meta/classes.txt
    assert ds.metainfo['classes'] == tuple(arch['wnids'])
    sample = ds[0]
    assert tuple(sample['inputs'].shape) == (3, 16, 16)
    info = ds.get_data_info(0)
    wnid = arch['wnids'][info['gt_label']]
    assert arch['val_truth'][osp.basename(info['img_path'])] == wnid


def test_folder_inputs_and_label_files(tmp_path, prepared):
    src, arch = prepared
    tool = load_tool('prepare_imagenet')
    # foldered train + foldered val, symlinked
    out = str(tmp_path / 'from_dirs')
    assert tool.prepare_imagenet(
        out, train_dir=osp.join(src, 'train'),
        val_dir=osp.join(src, 'val')) == []
    assert _read(osp.join(out, 'meta', 'val.txt')) == \
        _read(osp.join(src, 'meta', 'val.txt'))
    first = _read(osp.join(out, 'meta', 'train.txt'))[0][0]
    assert osp.islink(osp.join(out, 'train', first))
    # flat val folder + label files in three formats give the same labels
    flat = tmp_path / 'flat_val'
    flat.mkdir()
    for rel, _ in _read(osp.join(src, 'meta', 'val.txt')):
        shutil.copy(osp.join(src, 'val', rel), flat / osp.basename(rel))
    wnids = arch['wnids']
    formats = {
        'wnid.txt': ''.join(f'{n} {w}\n' for n, w in
                            arch['val_truth'].items()),
        'index.txt': ''.join(f'{n} {wnids.index(w)}\n' for n, w in
                             arch['val_truth'].items()),
        'LOC_val_solution.csv': 'ImageId,PredictionString\n' + ''.join(
            f'{n[:-5]},{w} 1 2 30 40 {w} 3 4 10 12\n'
            for n, w in arch['val_truth'].items()),
    }
    for fname, text in formats.items():
        labels = tmp_path / fname
        labels.write_text(text)
        out_f = str(tmp_path / f'out_{fname}')
        # reuse the class list of the prepared training split
        os.makedirs(osp.join(out_f, 'meta'))
        shutil.copy(osp.join(src, 'meta', 'classes.txt'),
                    osp.join(out_f, 'meta', 'classes.txt'))
        assert tool.prepare_imagenet(
            out_f, val_dir=str(flat), val_labels=str(labels),
            mode='copy') == []
        assert sorted(_read(osp.join(out_f, 'meta', 'val.txt'))) == \
            sorted(_read(osp.join(src, 'meta', 'val.txt'))), fname


def test_class_subset_with_full_validation_labels(tmp_path, prepared,
                                                  capsys):
    """A class subset (e.g. ImageNet-100): only some training class
    folders, with the full validation tar and devkit, or a validation folder
    with every class. Validation keeps the subset's classes and labels;
    the other images are skipped and counted."""
    src, arch = prepared
    tool = load_tool('prepare_imagenet')
    wnids = arch['wnids']
    subset = tmp_path / 'train_subset'
    for w in wnids[:2]:
        shutil.copytree(osp.join(src, 'train', w), subset / w)
    expected = sorted(
        [f'{w}/{n}', str(wnids.index(w))]
        for n, w in arch['val_truth'].items() if w in wnids[:2])
    dropped = len(arch['val_truth']) - len(expected)
    assert expected and dropped
    for kind, kwargs in (('tar', dict(val_tar=arch['val_tar'],
                                      devkit=arch['devkit'])),
                         ('dir', dict(val_dir=osp.join(src, 'val')))):
        out = str(tmp_path / f'subset_{kind}')
        assert tool.prepare_imagenet(out, train_dir=str(subset),
                                     **kwargs) == []
        assert _read(osp.join(out, 'meta', 'classes.txt')) == \
            [[w] for w in wnids[:2]]
        assert sorted(_read(osp.join(out, 'meta', 'val.txt'))) == expected
        assert sorted(os.listdir(osp.join(out, 'val'))) == wnids[:2]
    err = capsys.readouterr().err
    assert f'val: skipped {dropped} image(s) of classes outside the 2' in err
    assert 'val: skipped 1 class folder(s) outside the 2 classes' in err


def test_flat_val_without_labels_is_an_error(tmp_path, imagenet_archives):
    arch = imagenet_archives()
    with pytest.raises(ValueError, match='--devkit'):
        load_tool('prepare_imagenet').prepare_imagenet(
            str(tmp_path / 'x'), val_tar=arch['val_tar'])


def test_check_names_missing_split(prepared, capsys):
    out, _ = prepared
    tool = load_tool('prepare_imagenet')
    assert tool.main(['--check', out]) == 0
    shutil.rmtree(osp.join(out, 'val'))
    capsys.readouterr()
    assert tool.main(['--check', out]) == 1
    printed = capsys.readouterr().out
    assert "split 'val': missing image folder" in printed
    assert "split 'train'" not in printed
    os.remove(osp.join(out, 'meta', 'train.txt'))
    problems = check_imagenet_layout(out)
    assert any(p.startswith("split 'train': missing annotation file")
               for p in problems)


@pytest.mark.parametrize('label, message', [
    ('-1', 'with a label >= 0'),
    ('x', 'with a label >= 0'),
    (None, 'labels outside the'),
])
def test_check_refuses_bad_labels(prepared, label, message):
    """A hand-written meta file with a negative, non-integer or too large
    label (checked on every line, not only the first 1000) is a problem
    naming the file; the converter's own files pass."""
    out, _ = prepared
    assert check_imagenet_layout(out) == []
    ann = osp.join(out, 'meta', 'val.txt')
    with open(osp.join(out, 'meta', 'classes.txt')) as f:
        num_classes = len(f.read().split())
    with open(ann) as f:
        lines = f.read().splitlines()
    path = lines[-1].rsplit(' ', 1)[0]
    bad = f'{path} {num_classes if label is None else label}'
    with open(ann, 'w') as f:
        f.write('\n'.join(lines * 700 + [bad]) + '\n')
    problems = check_imagenet_layout(out)
    assert len(problems) == 1 and problems[0].startswith("split 'val'")
    assert message in problems[0] and repr(ann) in problems[0]
    assert repr(bad) in problems[0]


def test_missing_folders_fail_with_named_paths(tmp_path, prepared):
    out, _ = prepared
    missing_root = str(tmp_path / 'no_imagenet')
    with pytest.raises(DatasetLayoutError) as info:
        DATASETS.build(dict(type='ImageNetLocal', data_root=missing_root,
                            split='train'))
    assert repr(missing_root) in str(info.value)
    assert 'prepare_imagenet.py' in str(info.value)
    shutil.rmtree(osp.join(out, 'val'))
    with pytest.raises(FileNotFoundError) as info:
        DATASETS.build(dict(type='ImageNetLocal', data_root=out,
                            split='val'))
    assert f"split 'val': missing image folder " \
           f"{osp.join(out, 'val')!r}" in str(info.value)
    # flat folder without an annotation file
    os.makedirs(osp.join(out, 'val'))
    open(osp.join(out, 'val', 'ILSVRC2012_val_00000001.JPEG'), 'wb').close()
    os.remove(osp.join(out, 'meta', 'val.txt'))
    with pytest.raises(FileNotFoundError, match='no class sub-folders'):
        DATASETS.build(dict(type='ImageNetLocal', data_root=out,
                            split='val'))


def test_config_with_missing_folder_fails_clearly(tmp_path):
    cfg = Config.fromfile(CFG)
    assert cfg.train_dataloader.dataset.type == 'ImageNetLocal'
    root = str(tmp_path / 'imagenet_missing')
    cfg.train_dataloader.dataset.data_root = root
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    with DefaultScope.overwrite_default_scope('mmpretrain'), \
            pytest.raises(FileNotFoundError) as info:
        Runner.build_dataloader(cfg.train_dataloader)
    assert f'dataset root {root!r} does not exist' in str(info.value)


def test_config_pipelines_run(prepared):
    out, _ = prepared
    cfg = Config.fromfile(CFG)
    assert cfg.train_dataloader.batch_size == 256
    for key in ('train_dataloader', 'val_dataloader'):
        dcfg = cfg[key].dataset.copy()
        dcfg['data_root'] = out
        ds = DATASETS.build(dcfg)
        assert tuple(ds[0]['inputs'].shape) == (3, 224, 224)
