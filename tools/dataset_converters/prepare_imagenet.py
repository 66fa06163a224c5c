"""Prepare ImageNet-1k (ILSVRC2012) from archives or folders already on disk.

Never downloads. Output (read by ``ImageNetLocal`` / mmpretrain ``ImageNet``)::

    OUT/
    ├── train/<wnid>/<file>.JPEG
    ├── val/<wnid>/ILSVRC2012_val_XXXXXXXX.JPEG
    └── meta/
        ├── classes.txt     # sorted wnids; line i is label i
        ├── train.txt       # "<wnid>/<file> <label>"
        └── val.txt

Inputs:

* training images: ``--train-tar ILSVRC2012_img_train.tar`` (one tar per
  class inside, as distributed; a tar of ``<wnid>/`` folders also works) or
  ``--train-dir`` (a folder of ``<wnid>/`` sub-folders);
* validation images: ``--val-tar ILSVRC2012_img_val.tar`` (flat) or
  ``--val-dir`` (flat, or already in ``<wnid>/`` sub-folders);
* validation labels for flat images, one of ``--devkit
  ILSVRC2012_devkit_t12.tar.gz`` (or its extracted folder; uses
  ``data/meta.mat`` and ``data/ILSVRC2012_validation_ground_truth.txt``) or
  ``--val-labels FILE`` with lines ``<file> <wnid>``, ``<file> <label index>``
  (index into the sorted wnids) or Kaggle's ``LOC_val_solution.csv``.

Files from folders are symlinked by default (``--mode``); files from archives
are extracted.

Examples:
    python tools/dataset_converters/prepare_imagenet.py \
        --train-tar ILSVRC2012_img_train.tar --val-tar ILSVRC2012_img_val.tar \
        --devkit ILSVRC2012_devkit_t12.tar.gz --out data/imagenet
    python tools/dataset_converters/prepare_imagenet.py \
        --train-dir /datasets/imagenet/train --val-dir /datasets/imagenet/val \
        --out data/imagenet
    python tools/dataset_converters/prepare_imagenet.py --check data/imagenet
"""
import argparse
import csv
import io
import os
import os.path as osp
import re
import sys
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from _converter_common import (add_check_arg, add_mode_arg,  # noqa: E402
                               run_converter)
from tqdm import tqdm  # noqa: E402

from mergemix_mm.datasets.archives import (  # noqa: E402
    is_archive, iter_archive_files, iter_nested_tar_files, place_file,
    require_file, write_fileobj, write_lines)
from mergemix_mm.datasets.imagenet import check_imagenet_layout  # noqa: E402

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif')
WNID_RE = re.compile(r'^n\d{8}$')
DEVKIT_META = 'data/meta.mat'
DEVKIT_GT = 'data/ILSVRC2012_validation_ground_truth.txt'


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def _stem(name: str) -> str:
    return osp.splitext(osp.basename(name))[0]


# ----------------------------------------------------------------------------
# validation labels
# ----------------------------------------------------------------------------
def parse_devkit_meta(meta_mat: bytes) -> Dict[int, str]:
    """Map ILSVRC2012_ID to wnid from the devkit's ``data/meta.mat``.

    Args:
        meta_mat (bytes): Content of ``meta.mat``.

    Returns:
        dict: ``{ILSVRC2012_ID: wnid}`` for the 1000 leaf synsets.
    """
    from scipy.io import loadmat
    synsets = loadmat(io.BytesIO(meta_mat), squeeze_me=True)['synsets']
    mapping = {}
    for s in synsets.ravel():
        if int(s['num_children']) == 0:
            mapping[int(s['ILSVRC2012_ID'])] = str(s['WNID'])
    return mapping


def read_devkit_labels(devkit: str) -> Dict[str, str]:
    """Validation labels (``{image stem: wnid}``) from the ILSVRC2012 devkit.

    Args:
        devkit (str): ``ILSVRC2012_devkit_t12.tar.gz`` or its extracted
            folder.

    Returns:
        dict: ``{'ILSVRC2012_val_00000001': 'n01751748', ...}``.
    """
    contents = {}
    if osp.isdir(devkit):
        for rel in (DEVKIT_META, DEVKIT_GT):
            path = osp.join(devkit, rel)
            if not osp.isfile(path):
                raise FileNotFoundError(f'--devkit: missing {path!r}.')
            with open(path, 'rb') as f:
                contents[rel] = f.read()
    else:
        require_file(devkit, '--devkit (ILSVRC2012_devkit_t12.tar.gz)')
        for name, f in iter_archive_files(devkit, desc='devkit'):
            for rel in (DEVKIT_META, DEVKIT_GT):
                if name == rel or name.endswith('/' + rel):
                    contents[rel] = f.read()
        for rel in (DEVKIT_META, DEVKIT_GT):
            if rel not in contents:
                raise FileNotFoundError(
                    f'--devkit: {devkit!r} has no member .../{rel}.')
    id_to_wnid = parse_devkit_meta(contents[DEVKIT_META])
    gt = contents[DEVKIT_GT].decode().split()
    labels = {}
    for i, ilsvrc_id in enumerate(gt, start=1):
        if int(ilsvrc_id) not in id_to_wnid:
            raise ValueError(f'--devkit: ground-truth line {i} has '
                             f'ILSVRC2012_ID {ilsvrc_id} not in meta.mat.')
        labels[f'ILSVRC2012_val_{i:08d}'] = id_to_wnid[int(ilsvrc_id)]
    return labels


def read_val_labels(path: str,
                    classes: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """Read a validation label file into ``{image stem: wnid}``.

    Accepted formats: ``<file> <wnid>`` or ``<file> <label index>`` per line
    (separated by spaces, tabs or a comma; indices refer to ``classes``), or
    Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``).

    Args:
        path (str): The label file.
        classes (Sequence[str], optional): Sorted wnids, needed for integer
            labels. Defaults to None.

    Returns:
        dict: Image stem to wnid.
    """
    require_file(path, '--val-labels')
    with open(path, encoding='utf-8') as f:
        text = f.read()
    labels = {}
    first = text.lstrip().split('\n', 1)[0]
    if first.startswith('ImageId'):
        for row in csv.DictReader(io.StringIO(text)):
            labels[_stem(row['ImageId'])] = row['PredictionString'].split()[0]
        return labels
    for lineno, line in enumerate(text.splitlines(), start=1):
        parts = re.split(r'[\s,]+', line.strip())
        if parts == ['']:
            continue
        if len(parts) != 2:
            raise ValueError(f'--val-labels {path!r} line {lineno}: expected '
                             f'"<file> <wnid or label>", got {line!r}.')
        name, label = parts
        if WNID_RE.match(label):
            labels[_stem(name)] = label
        elif label.isdigit():
            if not classes:
                raise ValueError(
                    f'--val-labels {path!r} uses label indices; the class '
                    'list is unknown (give --train-tar/--train-dir or prepare '
                    'the training split first so meta/classes.txt exists).')
            if int(label) >= len(classes):
                raise ValueError(f'--val-labels {path!r} line {lineno}: label '
                                 f'{label} >= {len(classes)} classes.')
            labels[_stem(name)] = classes[int(label)]
        else:
            raise ValueError(f'--val-labels {path!r} line {lineno}: {label!r} '
                             'is neither a wnid (nXXXXXXXX) nor an index.')
    return labels


# ----------------------------------------------------------------------------
# placing images
# ----------------------------------------------------------------------------
def _extract_train_tar(train_tar: str, out_train: str) -> int:
    count = 0
    for name, f in iter_archive_files(train_tar, desc='train tar'):
        if name.lower().endswith('.tar'):
            wnid = _stem(name)
            for inner, g in iter_nested_tar_files(f):
                if _is_image(inner):
                    write_fileobj(g, osp.join(out_train, wnid,
                                              osp.basename(inner)))
                    count += 1
        elif _is_image(name) and '/' in name:
            wnid = osp.basename(osp.dirname(name))
            write_fileobj(f, osp.join(out_train, wnid, osp.basename(name)))
            count += 1
    return count


def _place_class_folders(src: str, dst: str, mode: str, desc: str,
                         keep: Optional[Sequence[str]] = None) -> int:
    """Place ``src/<wnid>/...`` images under ``dst``; with ``keep``, only
    the classes it lists (the others are counted and reported)."""
    if osp.abspath(src) == osp.abspath(dst):
        return 0
    keep = None if keep is None else set(keep)
    count, skipped = 0, []
    for wnid in tqdm(sorted(os.listdir(src)), desc=desc, file=sys.stderr):
        cdir = osp.join(src, wnid)
        if not osp.isdir(cdir):
            continue
        if keep is not None and wnid not in keep:
            skipped.append(wnid)
            continue
        for root, _, files in os.walk(cdir):
            for fn in sorted(files):
                if _is_image(fn):
                    rel = osp.relpath(osp.join(root, fn), cdir)
                    place_file(osp.join(root, fn), osp.join(dst, wnid, rel),
                               mode)
                    count += 1
    if skipped:
        print(f'{desc}: skipped {len(skipped)} class folder(s) outside the '
              f'{len(keep)} classes of meta/classes.txt (a subset), e.g. '
              f'{skipped[0]}', file=sys.stderr)
    return count


def _has_subfolders(path: str) -> bool:
    return any(osp.isdir(osp.join(path, n)) for n in os.listdir(path))


def _list_split(folder: str, classes: Sequence[str], split: str) -> List[str]:
    index = {c: i for i, c in enumerate(classes)}
    lines = []
    for wnid in tqdm(sorted(os.listdir(folder)), desc=f'index {split}',
                     file=sys.stderr):
        cdir = osp.join(folder, wnid)
        if not osp.isdir(cdir):
            continue
        if wnid not in index:
            raise ValueError(f'{split} class folder {cdir!r} is not among the '
                             f'{len(classes)} classes of meta/classes.txt.')
        for root, _, files in os.walk(cdir):
            for fn in sorted(files):
                if _is_image(fn):
                    rel = osp.relpath(osp.join(root, fn), folder)
                    lines.append(f"{rel.replace(os.sep, '/')} {index[wnid]}")
    return lines


def prepare_imagenet(out: str,
                     train_tar: Optional[str] = None,
                     train_dir: Optional[str] = None,
                     val_tar: Optional[str] = None,
                     val_dir: Optional[str] = None,
                     val_labels: Optional[str] = None,
                     devkit: Optional[str] = None,
                     mode: str = 'symlink',
                     max_images_checked: Optional[int] = 100) -> List[str]:
    """Build the ImageNet layout under ``out`` from local inputs.

    Args:
        out (str): Output root.
        train_tar (str, optional): ``ILSVRC2012_img_train.tar``.
        train_dir (str, optional): Folder of ``<wnid>/`` training folders.
        val_tar (str, optional): ``ILSVRC2012_img_val.tar`` (flat).
        val_dir (str, optional): Validation folder (flat or ``<wnid>/``).
        val_labels (str, optional): Label file for flat validation images.
        devkit (str, optional): ``ILSVRC2012_devkit_t12.tar.gz`` or folder.
        mode (str): How files from folders are placed. Defaults to
            ``'symlink'``.
        max_images_checked (int, optional): Images stat-ed per split by the
            final check. Defaults to 100.

    Returns:
        list[str]: Problems found by the final check of the prepared splits
        (empty on success).
    """
    if train_tar and train_dir:
        raise ValueError('give at most one of --train-tar and --train-dir.')
    if val_tar and val_dir:
        raise ValueError('give at most one of --val-tar and --val-dir.')
    if val_labels and devkit:
        raise ValueError('give at most one of --val-labels and --devkit.')
    if not (train_tar or train_dir or val_tar or val_dir):
        raise ValueError('nothing to do: give --train-tar/--train-dir and/or '
                         '--val-tar/--val-dir.')
    out_train = osp.join(out, 'train')
    out_val = osp.join(out, 'val')
    classes_file = osp.join(out, 'meta', 'classes.txt')
    splits = []

    classes: Optional[List[str]] = None
    if train_tar or train_dir:
        if train_tar:
            require_file(train_tar, '--train-tar (ILSVRC2012_img_train.tar)')
            n = _extract_train_tar(train_tar, out_train)
        else:
            if not osp.isdir(train_dir):
                raise FileNotFoundError(
                    f'--train-dir: {train_dir!r} does not exist.')
            n = _place_class_folders(train_dir, out_train, mode, 'train')
        print(f'train: placed {n} images', file=sys.stderr)
        if not n and not osp.isdir(out_train):
            source = (f'--train-tar: {train_tar!r}' if train_tar else
                      f'--train-dir: {train_dir!r}')
            raise ValueError(
                f'{source} holds no training images (expected <wnid>/ '
                'class folders of images, or the per-class tars of '
                'ILSVRC2012_img_train.tar); nothing was written.')
        classes = sorted(d for d in os.listdir(out_train)
                         if osp.isdir(osp.join(out_train, d)))
        if not classes:
            raise ValueError(f'no training class folders in {out_train!r}.')
        write_lines(classes_file, classes)
        write_lines(
            osp.join(out, 'meta', 'train.txt'),
            _list_split(out_train, classes, 'train'))
        splits.append('train')
    elif osp.isfile(classes_file):
        with open(classes_file, encoding='utf-8') as f:
            classes = [ln.strip() for ln in f if ln.strip()]

    if val_tar or val_dir:
        if val_dir and not osp.isdir(val_dir):
            raise FileNotFoundError(f'--val-dir: {val_dir!r} does not exist.')
        if val_dir and _has_subfolders(val_dir):
            n = _place_class_folders(val_dir, out_val, mode, 'val', classes)
        else:
            if devkit:
                labels = read_devkit_labels(devkit)
            elif val_labels:
                labels = read_val_labels(val_labels, classes)
            else:
                raise ValueError(
                    'flat validation images need labels: give --devkit '
                    'ILSVRC2012_devkit_t12.tar.gz or --val-labels FILE.')
            unlabelled = []
            keep = None if classes is None else set(classes)
            n = outside = 0
            if val_tar:
                require_file(val_tar, '--val-tar (ILSVRC2012_img_val.tar)')
                items = ((name, f, None)
                         for name, f in iter_archive_files(val_tar, 'val tar'))
            else:
                items = ((fn, None, osp.join(val_dir, fn))
                         for fn in sorted(os.listdir(val_dir)))
            for name, f, src in items:
                if not _is_image(name):
                    continue
                wnid = labels.get(_stem(name))
                if wnid is None:
                    unlabelled.append(name)
                    continue
                if keep is not None and wnid not in keep:
                    outside += 1  # a class subset: not one of its classes
                    continue
                dst = osp.join(out_val, wnid, osp.basename(name))
                if f is not None:
                    write_fileobj(f, dst)
                else:
                    place_file(src, dst, mode)
                n += 1
            if unlabelled:
                raise ValueError(
                    f'{len(unlabelled)} validation image(s) have no label in '
                    f'the label source, e.g. {unlabelled[0]!r}.')
            if outside:
                print(f'val: skipped {outside} image(s) of classes outside '
                      f'the {len(keep)} classes of meta/classes.txt (a '
                      'subset)', file=sys.stderr)
        print(f'val: placed {n} images', file=sys.stderr)
        if not n and not osp.isdir(out_val):
            source = (f'--val-tar: {val_tar!r}' if val_tar else
                      f'--val-dir: {val_dir!r}')
            raise ValueError(f'{source} holds no validation images; nothing '
                             'was written.')
        if classes is None:
            classes = sorted(d for d in os.listdir(out_val)
                             if osp.isdir(osp.join(out_val, d)))
            write_lines(classes_file, classes)
        write_lines(
            osp.join(out, 'meta', 'val.txt'),
            _list_split(out_val, classes, 'val'))
        splits.append('val')
    return check_imagenet_layout(
        out, splits, max_images_checked=max_images_checked)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Prepare ImageNet-1k from local archives/folders; never '
        'downloads.')
    parser.add_argument('--out', default='data/imagenet', help='output root')
    parser.add_argument('--train-tar', help='ILSVRC2012_img_train.tar')
    parser.add_argument('--train-dir', help='folder of <wnid>/ sub-folders')
    parser.add_argument('--val-tar', help='ILSVRC2012_img_val.tar (flat)')
    parser.add_argument(
        '--val-dir', help='validation folder (flat or <wnid>/)')
    parser.add_argument(
        '--val-labels',
        help='labels of flat val images: "<file> <wnid|index>" lines or '
        'LOC_val_solution.csv')
    parser.add_argument(
        '--devkit', help='ILSVRC2012_devkit_t12.tar.gz (or its folder)')
    add_mode_arg(parser,
                 'how files from folders are placed (archives are extracted)',
                 default='symlink')
    add_check_arg(parser)
    parser.add_argument(
        '--splits',
        nargs='+',
        default=['train', 'val'],
        help='splits required by --check')
    parser.add_argument(
        '--full-check',
        action='store_true',
        help='--check stats every listed image (default: 100 per split)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    limit = None if args.full_check else 100

    def prepare() -> List[str]:
        for path in (args.train_tar, args.val_tar):
            if path and not is_archive(path):
                print(f'warning: {path!r} does not look like a tar archive',
                      file=sys.stderr)
        return prepare_imagenet(
            args.out,
            train_tar=args.train_tar,
            train_dir=args.train_dir,
            val_tar=args.val_tar,
            val_dir=args.val_dir,
            val_labels=args.val_labels,
            devkit=args.devkit,
            mode=args.mode,
            max_images_checked=limit)

    return run_converter(
        'ImageNet', args,
        lambda root: check_imagenet_layout(
            root, args.splits, max_images_checked=limit), prepare)


if __name__ == '__main__':
    sys.exit(main())
