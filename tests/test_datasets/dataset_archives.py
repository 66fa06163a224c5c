"""Tiny dataset archives in the real distribution formats, built in tmp_path.

Each factory writes a few small images with the member names, folder
structure and annotation formats of the official archive:

* ``cifar-100-python.tar.gz``:
  ``cifar-100-python/{train,test,meta,file.txt~}``,
  pickled dicts with bytes keys (``b'data'`` uint8 (N, 3072),
  ``b'fine_labels'``, ``b'coarse_labels'``, ``b'filenames'``; meta
  ``b'fine_label_names'``), protocol 2 as the originals.
* ImageNet: ``ILSVRC2012_img_train.tar`` holding one ``<wnid>.tar`` per class
  (flat ``<wnid>_<k>.JPEG`` inside), flat ``ILSVRC2012_img_val.tar`` and
  ``ILSVRC2012_devkit_t12.tar.gz`` with ``data/meta.mat`` (``synsets`` struct
  array incl. non-leaf synsets, ILSVRC2012_IDs not in wnid order) and
  ``data/ILSVRC2012_validation_ground_truth.txt``.
* ``CUB_200_2011.tgz``: top-level ``attributes.txt`` + ``CUB_200_2011/``
  with ``images/<NNN.Class>/…jpg``, ``images.txt``, ``image_class_labels.txt``,
  ``train_test_split.txt``, ``classes.txt``.
* Stanford Cars: ``cars_train.tgz``, ``cars_test.tgz``, ``car_devkit.tgz``
  (``devkit/cars_{train,test}_annos.mat``, ``cars_meta.mat``) and
  ``cars_test_annos_withlabels.mat`` (MATLAB v5 struct arrays with fields
  bbox_x1, bbox_y1, bbox_x2, bbox_y2, class, fname); or ``car_ims.tgz`` +
  ``cars_annos.mat``.
* ``fgvc-aircraft-2013b.tar.gz``: ``fgvc-aircraft-2013b/data/images/<id>.jpg``
  and ``data/images_variant_{train,val,trainval,test}.txt``.
* ``tiny-imagenet-200.zip``: ``wnids.txt``, ``words.txt``,
  ``train/<wnid>/images/<wnid>_<k>.JPEG``, ``train/<wnid>/<wnid>_boxes.txt``,
  ``val/images/val_<k>.JPEG``, ``val/val_annotations.txt`` (tab separated),
  ``test/images/``.
"""
import importlib.util
import io
import os.path as osp
import pickle
import sys
import tarfile
import zipfile
from typing import Dict, List, Tuple

import cv2
import numpy as np
import pytest

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TOOLS = osp.join(REPO, 'tools', 'dataset_converters')


def load_tool(name: str):
    """Import ``tools/dataset_converters/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(
        f'_converter_{name}', osp.join(TOOLS, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def jpeg_bytes(value: int, size: Tuple[int, int] = (20, 24)) -> bytes:
    """A small JPEG whose pixels are ~``value`` (BGR), decodable by cv2."""
    img = np.full((size[0], size[1], 3), value % 256, np.uint8)
    img[:, :, 1] = (value * 7) % 256
    ok, buf = cv2.imencode('.jpg', img)
    assert ok
    return buf.tobytes()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _add_dir(tf: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    tf.addfile(info)


def _tar_bytes(files: Dict[str, bytes], mode: str = 'w') -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in files.items():
            _add(tf, name, data)
    return buf.getvalue()


def write_tar(path: str, files: Dict[str, bytes], dirs=()) -> str:
    mode = 'w:gz' if path.endswith(('.gz', '.tgz')) else 'w'
    with tarfile.open(path, mode) as tf:
        for d in dirs:
            _add_dir(tf, d)
        for name, data in files.items():
            _add(tf, name, data)
    return path


def savemat_struct(path: str, records: List[dict], key: str = 'annotations',
                   extra: dict = None) -> None:
    """Write a MATLAB v5 file with a 1xN struct array (like the originals)."""
    from scipy.io import savemat
    fields = list(records[0])
    arr = np.zeros((1, len(records)), dtype=[(f, 'O') for f in fields])
    for i, rec in enumerate(records):
        arr[0, i] = tuple(
            np.array([rec[f]]) if isinstance(rec[f], str) else np.array(
                [[rec[f]]], dtype=np.uint16) for f in fields)
    savemat(path, {key: arr, **(extra or {})})


# ----------------------------------------------------------------------------
# CIFAR-100
# ----------------------------------------------------------------------------
def _cifar_entry(n: int, seed: int) -> dict:
    rng = np.random.RandomState(seed)
    return {
        b'filenames': [f'img_{i}.png'.encode() for i in range(n)],
        b'batch_label': b'training batch 1 of 1',
        b'fine_labels': [int(x) for x in rng.randint(0, 100, n)],
        b'coarse_labels': [int(x) for x in rng.randint(0, 20, n)],
        b'data': rng.randint(0, 256, (n, 3072)).astype(np.uint8),
    }


@pytest.fixture
def cifar100_tarball(tmp_path):
    """Factory: ``make(n_train=6, n_test=4, skip=())`` -> (path, entries)."""

    def make(n_train: int = 6, n_test: int = 4, skip=()):
        entries = {'train': _cifar_entry(n_train, 0),
                   'test': _cifar_entry(n_test, 1)}
        from mmpretrain.datasets.categories import CIFAR100_CATEGORIES
        meta = {b'fine_label_names': [c.encode() for c in
                                      CIFAR100_CATEGORIES],
                b'coarse_label_names': [f'c{i}'.encode() for i in range(20)]}
        files = {f'cifar-100-python/{k}': pickle.dumps(v, protocol=2)
                 for k, v in entries.items() if k not in skip}
        if 'meta' not in skip:
            files['cifar-100-python/meta'] = pickle.dumps(meta, protocol=2)
        files['cifar-100-python/file.txt~'] = b''
        path = str(tmp_path / 'cifar-100-python.tar.gz')
        write_tar(path, files, dirs=['cifar-100-python'])
        return path, entries

    return make


# ----------------------------------------------------------------------------
# ImageNet
# ----------------------------------------------------------------------------
#: Leaf synsets used by the fake ImageNet, with ILSVRC2012_IDs deliberately
#: not in sorted-wnid order (as in the real meta.mat).
IMAGENET_WNIDS = {'n01440764': 3, 'n01443537': 1, 'n01484850': 2}


@pytest.fixture
def imagenet_archives(tmp_path):
    """Factory -> dict with train_tar, val_tar, devkit and truth tables."""

    def make(per_class: int = 2, n_val: int = 5):
        wnids = sorted(IMAGENET_WNIDS)
        inner = {}
        for c, wnid in enumerate(wnids):
            inner[f'{wnid}.tar'] = _tar_bytes({
                f'{wnid}_{k}.JPEG': jpeg_bytes(10 * c + k)
                for k in range(per_class)
            })
        train_tar = write_tar(str(tmp_path / 'ILSVRC2012_img_train.tar'),
                              inner)
        val_truth = {}
        val_files = {}
        for i in range(1, n_val + 1):
            wnid = wnids[i % len(wnids)]
            name = f'ILSVRC2012_val_{i:08d}.JPEG'
            val_truth[name] = wnid
            val_files[name] = jpeg_bytes(100 + i)
        val_tar = write_tar(str(tmp_path / 'ILSVRC2012_img_val.tar'),
                            val_files)
        # devkit meta.mat: leaf synsets + one non-leaf synset
        from scipy.io import savemat
        fields = ['ILSVRC2012_ID', 'WNID', 'words', 'gloss', 'num_children',
                  'children', 'wordnet_height', 'num_train_images']
        recs = [(IMAGENET_WNIDS[w], w, f'words {w}', 'gloss', 0,
                 np.zeros((1, 0)), 0, per_class) for w in wnids]
        recs.append((1001, 'n00001740', 'entity', 'gloss', 3,
                     np.array([[1, 2, 3]]), 19, 0))
        synsets = np.zeros((len(recs), 1), dtype=[(f, 'O') for f in fields])
        for i, r in enumerate(recs):
            synsets[i, 0] = r
        buf = io.BytesIO()
        savemat(buf, {'synsets': synsets})
        gt = '\n'.join(
            str(IMAGENET_WNIDS[val_truth[f'ILSVRC2012_val_{i:08d}.JPEG']])
            for i in range(1, n_val + 1)) + '\n'
        devkit = write_tar(
            str(tmp_path / 'ILSVRC2012_devkit_t12.tar.gz'), {
                'ILSVRC2012_devkit_t12/data/meta.mat': buf.getvalue(),
                'ILSVRC2012_devkit_t12/data/'
                'ILSVRC2012_validation_ground_truth.txt': gt.encode(),
                'ILSVRC2012_devkit_t12/readme.txt': b'devkit',
            })
        return dict(train_tar=train_tar, val_tar=val_tar, devkit=devkit,
                    wnids=wnids, val_truth=val_truth, per_class=per_class)

    return make


# ----------------------------------------------------------------------------
# CUB-200-2011
# ----------------------------------------------------------------------------
@pytest.fixture
def cub_tgz(tmp_path):
    """Factory -> (path, list of (relative image path, class id, is_train))."""

    def make():
        from mmpretrain.datasets.categories import CUB_CATEGORIES
        samples = []
        files = {}
        img_id = 0
        for cls in (1, 2, 3):
            folder = f'{cls:03d}.{CUB_CATEGORIES[cls - 1]}'
            for k in range(3):
                img_id += 1
                name = CUB_CATEGORIES[cls - 1]
                rel = f'{folder}/{name}_{k:04d}_{img_id}.jpg'
                is_train = k < 2
                samples.append((img_id, rel, cls, is_train))
                files[f'CUB_200_2011/images/{rel}'] = jpeg_bytes(img_id)
        files['CUB_200_2011/images.txt'] = ''.join(
            f'{i} {rel}\n' for i, rel, _, _ in samples).encode()
        files['CUB_200_2011/image_class_labels.txt'] = ''.join(
            f'{i} {c}\n' for i, _, c, _ in samples).encode()
        files['CUB_200_2011/train_test_split.txt'] = ''.join(
            f'{i} {int(t)}\n' for i, _, _, t in samples).encode()
        files['CUB_200_2011/classes.txt'] = ''.join(
            f'{c} {c:03d}.{CUB_CATEGORIES[c - 1]}\n'
            for c in (1, 2, 3)).encode()
        files['CUB_200_2011/bounding_boxes.txt'] = ''.join(
            f'{i} 1.0 2.0 10.0 12.0\n' for i, _, _, _ in samples).encode()
        files['CUB_200_2011/README'] = b'The Caltech-UCSD Birds-200-2011'
        files['attributes.txt'] = b'1 has_bill_shape::curved_(up_or_down)\n'
        path = write_tar(str(tmp_path / 'CUB_200_2011.tgz'), files,
                         dirs=['CUB_200_2011', 'CUB_200_2011/images'])
        return path, samples

    return make


# ----------------------------------------------------------------------------
# Stanford Cars
# ----------------------------------------------------------------------------
def _car_rec(fname: str, cls: int, with_class: bool = True) -> dict:
    rec = dict(bbox_x1=1, bbox_y1=2, bbox_x2=15, bbox_y2=12)
    if with_class:
        rec['class'] = cls
    rec['fname'] = fname
    return rec


@pytest.fixture
def cars_files(tmp_path):
    """Factory -> dict of the official split-layout files + truth."""

    def make():
        train = [(f'{i:05d}.jpg', c) for i, c in
                 zip(range(1, 5), (1, 2, 196, 2))]
        test = [(f'{i:05d}.jpg', c) for i, c in zip(range(1, 4), (3, 1, 196))]
        out = {}
        out['cars_train.tgz'] = write_tar(
            str(tmp_path / 'cars_train.tgz'),
            {f'cars_train/{f}': jpeg_bytes(i) for i, (f, _) in
             enumerate(train)})
        out['cars_test.tgz'] = write_tar(
            str(tmp_path / 'cars_test.tgz'),
            {f'cars_test/{f}': jpeg_bytes(50 + i) for i, (f, _) in
             enumerate(test)})
        mats = tmp_path / 'mats'
        mats.mkdir()
        savemat_struct(str(mats / 'cars_train_annos.mat'),
                       [_car_rec(f, c) for f, c in train])
        savemat_struct(str(mats / 'cars_test_annos.mat'),
                       [_car_rec(f, c, False) for f, c in test])
        from scipy.io import savemat
        savemat(str(mats / 'cars_meta.mat'), {
            'class_names': np.array([[np.array([f'car {i}'])
                                      for i in range(196)]], dtype=object)})
        with open(mats / 'cars_train_annos.mat', 'rb') as f1, \
                open(mats / 'cars_test_annos.mat', 'rb') as f2, \
                open(mats / 'cars_meta.mat', 'rb') as f3:
            out['car_devkit.tgz'] = write_tar(
                str(tmp_path / 'car_devkit.tgz'), {
                    'devkit/cars_train_annos.mat': f1.read(),
                    'devkit/cars_test_annos.mat': f2.read(),
                    'devkit/cars_meta.mat': f3.read(),
                    'devkit/README.txt': b'cars 196 devkit',
                })
        withlabels = str(tmp_path / 'cars_test_annos_withlabels.mat')
        savemat_struct(withlabels, [_car_rec(f, c) for f, c in test])
        out['cars_test_annos_withlabels.mat'] = withlabels
        # single-file layout: car_ims.tgz + cars_annos.mat
        allims = [(f'car_ims/{i:06d}.jpg', c, t) for i, c, t in
                  [(1, 1, 0), (2, 5, 1), (3, 7, 0), (4, 196, 1), (5, 5, 0)]]
        out['car_ims.tgz'] = write_tar(
            str(tmp_path / 'car_ims.tgz'),
            {p: jpeg_bytes(80 + i) for i, (p, _, _) in enumerate(allims)})
        recs = [dict(relative_im_path=p, bbox_x1=1, bbox_y1=1, bbox_x2=9,
                     bbox_y2=9, **{'class': c}, test=t) for p, c, t in allims]
        annos = str(tmp_path / 'cars_annos.mat')
        savemat_struct(annos, recs)
        out['cars_annos.mat'] = annos
        return dict(files=out, train=train, test=test, allims=allims)

    return make


# ----------------------------------------------------------------------------
# FGVC-Aircraft
# ----------------------------------------------------------------------------
@pytest.fixture
def aircraft_tgz(tmp_path):
    """Factory -> (path, {split: [(image id, variant)]})."""

    def make():
        variants = ['707-320', 'Boeing 717', 'F/A-18', 'Cessna 172']
        ids = {s: [] for s in ('train', 'val', 'test')}
        k = 1000000
        for split in ids:
            for v in variants[:3] if split != 'test' else variants:
                k += 1
                ids[split].append((f'{k:07d}', v))
        ids['trainval'] = ids['train'] + ids['val']
        top = 'fgvc-aircraft-2013b'
        files = {}
        for split, items in ids.items():
            files[f'{top}/data/images_variant_{split}.txt'] = ''.join(
                f'{i} {v}\n' for i, v in items).encode()
            files[f'{top}/data/images_family_{split}.txt'] = b''
            for i, _ in items:
                files[f'{top}/data/images/{i}.jpg'] = jpeg_bytes(int(i[-2:]))
        files[f'{top}/data/variants.txt'] = ''.join(
            f'{v}\n' for v in variants).encode()
        files[f'{top}/README.html'] = b'<html></html>'
        path = write_tar(str(tmp_path / 'fgvc-aircraft-2013b.tar.gz'), files)
        return path, ids

    return make


# ----------------------------------------------------------------------------
# Tiny-ImageNet
# ----------------------------------------------------------------------------
@pytest.fixture
def tiny_zip(tmp_path):
    """Factory -> (path, wnids, {val file: wnid})."""

    def make(per_class: int = 2):
        wnids = ['n02124075', 'n01443537', 'n04067472']  # wnids.txt order
        top = 'tiny-imagenet-200'
        path = str(tmp_path / 'tiny-imagenet-200.zip')
        val_truth = {}
        with zipfile.ZipFile(path, 'w') as zf:
            zf.writestr(f'{top}/', '')
            zf.writestr(f'{top}/wnids.txt', ''.join(f'{w}\n' for w in wnids))
            zf.writestr(f'{top}/words.txt', ''.join(
                f'{w}\tthing {w}\n' for w in wnids + ['n00001740']))
            for c, w in enumerate(wnids):
                zf.writestr(f'{top}/train/{w}/{w}_boxes.txt',
                            ''.join(f'{w}_{k}.JPEG\t0\t0\t63\t63\n'
                                    for k in range(per_class)))
                for k in range(per_class):
                    zf.writestr(f'{top}/train/{w}/images/{w}_{k}.JPEG',
                                jpeg_bytes(c * 10 + k, (64, 64)))
            lines = []
            for i in range(5):
                w = wnids[(i * 2) % 3]
                val_truth[f'val_{i}.JPEG'] = w
                lines.append(f'val_{i}.JPEG\t{w}\t0\t3\t44\t62\n')
                zf.writestr(f'{top}/val/images/val_{i}.JPEG',
                            jpeg_bytes(200 + i, (64, 64)))
            zf.writestr(f'{top}/val/val_annotations.txt', ''.join(lines))
            zf.writestr(f'{top}/test/images/test_0.JPEG',
                        jpeg_bytes(1, (64, 64)))
        return path, wnids, val_truth

    return make


@pytest.fixture
def run_cli():
    """Run a converter CLI in a subprocess; return (returncode, output)."""
    import subprocess

    def run(name: str, *args: str, cwd: str = REPO):
        proc = subprocess.run(
            [sys.executable, osp.join(TOOLS, f'{name}.py'), *args],
            cwd=cwd, capture_output=True, text=True, timeout=300)
        return proc.returncode, proc.stdout + proc.stderr

    return run
