import os
import os.path as osp
import pickle
import tarfile

import numpy as np
import pytest
from mmengine.config import Config
from mmpretrain.registry import DATASETS

import mergemix_mm  # noqa: F401
from mergemix_mm.datasets import (FIXMATCH_RANDAUG_POLICIES,
                                  check_cifar100_layout, load_cifar100_pickle)
from mergemix_mm.datasets.layout import DatasetLayoutError

from dataset_archives import REPO, load_tool

CFG = osp.join(REPO, 'configs', '_base_', 'datasets',
               'cifar100_bs100_224px.py')


@pytest.fixture
def prepared(tmp_path, cifar100_tarball):
    archive, entries = cifar100_tarball()
    out = str(tmp_path / 'cifar100')
    problems = load_tool('prepare_cifar100').prepare_cifar100(
        out, archive=archive)
    assert problems == []
    return out, entries


def test_converter_writes_official_layout(prepared):
    out, entries = prepared
    folder = osp.join(out, 'cifar-100-python')
    assert sorted(os.listdir(folder)) == ['meta', 'test', 'train']
    images, labels = load_cifar100_pickle(osp.join(folder, 'test'))
    raw = entries['test'][b'data']
    assert images.shape == (4, 32, 32, 3)
    # row layout: 1024 R, then 1024 G, then 1024 B values, row-major
    np.testing.assert_array_equal(images[2, 5, 7],
                                  raw[2, [5 * 32 + 7, 1024 + 5 * 32 + 7,
                                          2048 + 5 * 32 + 7]])
    assert labels.tolist() == entries['test'][b'fine_labels']


def test_dataset_serves_rgb_images_and_labels(prepared):
    out, entries = prepared
    ds = DATASETS.build(
        dict(type='CIFAR100Local', data_root=out, split='test',
             pipeline=[dict(type='PackInputs')]))
    assert len(ds) == 4 and len(ds.metainfo['classes']) == 100
    sample = ds[1]
    img = sample['inputs'].numpy().transpose(1, 2, 0)  # CHW -> HWC
    expected = entries['test'][b'data'][1].reshape(3, 32, 32).transpose(
        1, 2, 0)
    np.testing.assert_array_equal(img, expected)
    assert sample['data_samples'].gt_label.item() == \
        entries['test'][b'fine_labels'][1]


def test_config_pipelines_run(prepared):
    out, _ = prepared
    cfg = Config.fromfile(CFG)
    assert cfg.data_preprocessor.num_classes == 100
    np.testing.assert_allclose(cfg.data_preprocessor.mean,
                               np.array([0.4914, 0.4822, 0.4465]) * 255)
    np.testing.assert_allclose(cfg.data_preprocessor.std,
                               np.array([0.2023, 0.1994, 0.201]) * 255)
    assert cfg.train_dataloader.batch_size == 100
    assert [dict(p) for p in
            cfg.train_pipeline[2]['policies']] == \
        [dict(p) for p in FIXMATCH_RANDAUG_POLICIES]
    for key, size in (('train_dataloader', 224), ('val_dataloader', 224)):
        dcfg = cfg[key].dataset.copy()
        dcfg['data_root'] = out
        ds = DATASETS.build(dcfg)
        np.random.seed(0)
        for i in range(3):
            assert tuple(ds[i]['inputs'].shape) == (3, size, size)


def test_missing_split_file_names_path_and_command(tmp_path,
                                                   cifar100_tarball):
    archive, _ = cifar100_tarball(skip=('test', ))
    out = str(tmp_path / 'c100')
    problems = load_tool('prepare_cifar100').prepare_cifar100(
        out, archive=archive)
    missing = osp.join(out, 'cifar-100-python', 'test')
    assert problems == [f"split 'test': missing file {missing!r}"]
    # the train split still loads; the test split fails clearly
    DATASETS.build(dict(type='CIFAR100Local', data_root=out, split='train'))
    with pytest.raises(FileNotFoundError) as info:
        DATASETS.build(dict(type='CIFAR100Local', data_root=out,
                            split='test'))
    msg = str(info.value)
    assert isinstance(info.value, DatasetLayoutError)
    assert repr(missing) in msg and 'prepare_cifar100.py' in msg
    # the last line (what a traceback ends with) names the missing file
    assert repr(missing) in msg.splitlines()[-1]


def test_missing_root_and_no_download(tmp_path):
    root = str(tmp_path / 'nowhere')
    with pytest.raises(FileNotFoundError, match='does not exist'):
        DATASETS.build(dict(type='CIFAR100Local', data_root=root))
    with pytest.raises(TypeError, match='never downloads'):
        DATASETS.build(dict(type='CIFAR100Local', data_root=root,
                            download=True))
    with pytest.raises(ValueError, match="split='val'"):
        DATASETS.build(dict(type='CIFAR100Local', data_root=root,
                            split='val'))


def test_str_keys_and_malformed_files(tmp_path):
    folder = tmp_path / 'cifar-100-python'
    folder.mkdir()
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    with open(folder / 'train', 'wb') as f:  # re-pickled with str keys
        pickle.dump({'data': data, 'fine_labels': [3, 99]}, f)
    images, labels = load_cifar100_pickle(str(folder / 'train'))
    assert labels.tolist() == [3, 99] and images.shape == (2, 32, 32, 3)
    with open(folder / 'test', 'wb') as f:
        pickle.dump({'data': data[:, :100], 'fine_labels': [1, 2]}, f)
    with pytest.raises(ValueError, match=r"test'.*\(N, 3072\)"):
        load_cifar100_pickle(str(folder / 'test'))
    problems = check_cifar100_layout(str(tmp_path))
    assert any(p.startswith("split 'test': unreadable") for p in problems)
    assert any(p.startswith('meta: missing file') for p in problems)


def test_check_cli_names_missing_split(tmp_path, cifar100_tarball, capsys):
    archive, _ = cifar100_tarball()
    tool = load_tool('prepare_cifar100')
    out = str(tmp_path / 'c')
    assert tool.main(['--archive', archive, '--out', out]) == 0
    assert tool.main(['--check', out]) == 0
    os.remove(osp.join(out, 'cifar-100-python', 'train'))
    capsys.readouterr()
    assert tool.main(['--check', out]) == 1
    printed = capsys.readouterr().out
    assert "split 'train': missing file" in printed
    assert "split 'test'" not in printed


def test_cli_subprocess_reports_missing_split(tmp_path, cifar100_tarball,
                                              run_cli):
    archive, _ = cifar100_tarball(skip=('train', ))
    out = str(tmp_path / 'cli_out')
    code, output = run_cli('prepare_cifar100', '--archive', archive, '--out',
                           out)
    assert code == 1, output
    assert "split 'train': missing file" in output
    assert osp.isfile(osp.join(out, 'cifar-100-python', 'test'))


def test_missing_archive_is_named_not_downloaded(tmp_path, capsys):
    tool = load_tool('prepare_cifar100')
    archive = str(tmp_path / 'cifar-100-python.tar.gz')
    assert tool.main(['--archive', archive, '--out',
                      str(tmp_path / 'o')]) == 2
    err = capsys.readouterr().err
    assert repr(archive) in err and 'never download' in err
    assert not osp.exists(tmp_path / 'o')


@pytest.mark.parametrize('cut', [0.3, 0.9])
def test_truncated_archive_leaves_no_half_written_file(tmp_path,
                                                       cifar100_tarball,
                                                       capsys, cut):
    """A download cut short (in a member's data or in the headers): the
    converter exits 2 with an error line, and every file it left is
    complete (no 0-byte or partial split file, no temporary file)."""
    archive, _ = cifar100_tarball()
    data = open(archive, 'rb').read()
    short = str(tmp_path / 'short.tar.gz')
    with open(short, 'wb') as f:
        f.write(data[:int(len(data) * cut)])
    out = tmp_path / 'o'
    tool = load_tool('prepare_cifar100')
    assert tool.main(['--archive', short, '--out', str(out)]) == 2
    assert 'truncated or corrupt' in capsys.readouterr().err
    with tarfile.open(archive) as tf:
        full = {osp.basename(m.name): tf.extractfile(m).read()
                for m in tf if m.isfile()}
    for folder, _, files in os.walk(out):
        for name in files:
            assert name in full, name  # no temporary files
            assert open(osp.join(folder, name), 'rb').read() == full[name]
