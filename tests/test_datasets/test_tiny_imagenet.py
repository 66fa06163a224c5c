import os
import os.path as osp
import shutil

import pytest
from mmengine.config import Config
from mmpretrain.registry import DATASETS

import mergemix_mm  # noqa: F401
from mergemix_mm.datasets import check_tiny_imagenet_layout

from dataset_archives import REPO, load_tool

CFG = osp.join(REPO, 'configs', '_base_', 'datasets',
               'tiny_imagenet_bs100_64px.py')


@pytest.fixture
def prepared(tmp_path, tiny_zip):
    archive, wnids, val_truth = tiny_zip()
    out = str(tmp_path / 'tiny')
    assert load_tool('prepare_tiny_imagenet').prepare_tiny_imagenet(
        out, archive=archive) == []
    return out, wnids, val_truth


def test_converter_sorts_val_into_class_folders(prepared):
    out, wnids, val_truth = prepared
    classes = sorted(wnids)
    with open(osp.join(out, 'meta', 'classes.txt')) as f:
        assert f.read().split() == classes
    for name, wnid in val_truth.items():
        assert osp.isfile(osp.join(out, 'val', wnid, name))
    assert not osp.exists(osp.join(out, 'val', '_unsorted'))
    assert not osp.exists(osp.join(out, 'test'))  # unlabelled, not copied
    # train images are flattened out of train/<wnid>/images/
    assert sorted(os.listdir(osp.join(out, 'train', wnids[0]))) == \
        [f'{wnids[0]}_0.JPEG', f'{wnids[0]}_1.JPEG']


def test_dataset_labels_follow_sorted_wnids(prepared):
    out, wnids, val_truth = prepared
    classes = sorted(wnids)
    ds = DATASETS.build(dict(type='TinyImageNet', data_root=out, split='val',
                             pipeline=[dict(type='SafeLoadImageFromFile'),
                                       dict(type='PackInputs')]))
    assert ds.metainfo['classes'] == tuple(classes)
    assert len(ds) == len(val_truth)
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        assert classes[info['gt_label']] == \
            val_truth[osp.basename(info['img_path'])]
    assert tuple(ds[0]['inputs'].shape) == (3, 64, 64)


def test_src_dir_input_matches_archive(tmp_path, prepared):
    out, _, _ = prepared
    import zipfile
    archive = str(tmp_path / 'tiny-imagenet-200.zip')
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path / 'extracted')
    out2 = str(tmp_path / 'tiny2')
    assert load_tool('prepare_tiny_imagenet').prepare_tiny_imagenet(
        out2, src_dir=str(tmp_path / 'extracted'), mode='symlink') == []
    for split in ('train', 'val'):
        with open(osp.join(out, 'meta', f'{split}.txt')) as a, \
                open(osp.join(out2, 'meta', f'{split}.txt')) as b:
            assert a.read() == b.read()


def test_src_dir_as_out_is_refused_before_writing(tmp_path, tiny_zip):
    """Converting an extracted folder into itself cannot work (the layout
    is rewritten and the original folders would stay behind); it is refused
    up front, naming both settings, and nothing is written."""
    import zipfile
    archive, _, _ = tiny_zip()
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path / 'data')
    root = tmp_path / 'data' / 'tiny-imagenet-200'
    before = sorted(str(p) for p in tmp_path.rglob('*'))
    tool = load_tool('prepare_tiny_imagenet')
    for src, out in ((root, root), (tmp_path / 'data', root),
                     (root, root / 'converted')):
        with pytest.raises(ValueError, match='--src-dir .* and --out .*'
                           'same folder'):
            tool.prepare_tiny_imagenet(str(out), src_dir=str(src))
    assert sorted(str(p) for p in tmp_path.rglob('*')) == before
    # an output next to the extracted folder, inside the folder given as
    # --src-dir (which holds tiny-imagenet-200/), is fine
    assert tool.prepare_tiny_imagenet(
        str(tmp_path / 'data' / 'tiny-mm'), src_dir=str(tmp_path / 'data'),
        mode='symlink') == []


def test_check_names_missing_split(prepared, capsys):
    out, _, _ = prepared
    tool = load_tool('prepare_tiny_imagenet')
    assert tool.main(['--check', out]) == 0
    shutil.rmtree(osp.join(out, 'val'))
    capsys.readouterr()
    assert tool.main(['--check', out]) == 1
    printed = capsys.readouterr().out
    assert "split 'val': missing image folder" in printed
    assert "split 'train'" not in printed
    with pytest.raises(FileNotFoundError, match="split 'val'"):
        DATASETS.build(dict(type='TinyImageNet', data_root=out, split='val'))
    assert check_tiny_imagenet_layout(out, ['train']) == []


@pytest.mark.parametrize('label', ['-1', 'x', None])
def test_check_refuses_bad_labels(prepared, label):
    """A meta line whose label is not an integer in [0, classes) is a
    problem that quotes the line."""
    out, wnids, _ = prepared
    ann = osp.join(out, 'meta', 'val.txt')
    with open(ann) as f:
        lines = f.read().splitlines()
    path = lines[-1].rsplit(' ', 1)[0]
    bad = f'{path} {len(wnids) if label is None else label}'
    with open(ann, 'w') as f:
        f.write('\n'.join(lines + [bad]) + '\n')
    problems = check_tiny_imagenet_layout(out)
    assert len(problems) == 1 and problems[0].startswith("split 'val'")
    assert f'<label in [0, {len(wnids)})>' in problems[0]
    assert repr(bad) in problems[0]


def test_config_pipelines_run(prepared):
    out, _, _ = prepared
    cfg = Config.fromfile(CFG)
    assert cfg.data_preprocessor.num_classes == 200
    for key in ('train_dataloader', 'val_dataloader'):
        dcfg = cfg[key].dataset.copy()
        dcfg['data_root'] = out
        ds = DATASETS.build(dcfg)
        assert tuple(ds[0]['inputs'].shape) == (3, 64, 64)
