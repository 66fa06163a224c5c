"""Prepare Tiny-ImageNet-200 from ``tiny-imagenet-200.zip`` already on disk.

Never downloads. The archive holds ``train/<wnid>/images/*.JPEG`` and a flat
``val/images/`` labelled by ``val/val_annotations.txt``
(``<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>``). Output, the layout of
``TinyImageNet``::

    OUT/                            (e.g. data/tiny-imagenet-200)
    ├── train/<wnid>/<wnid>_<k>.JPEG
    ├── val/<wnid>/val_<k>.JPEG
    ├── meta/
    │   ├── classes.txt             # sorted wnids; line i is label i
    │   ├── train.txt               # "<wnid>/<file> <label>"
    │   └── val.txt
    └── wnids.txt, words.txt        # copied as is

The unlabelled ``test/`` images are not copied.

Examples:
    python tools/dataset_converters/prepare_tiny_imagenet.py \
        --archive tiny-imagenet-200.zip --out data/tiny-imagenet-200
    python tools/dataset_converters/prepare_tiny_imagenet.py \
        --check data/tiny-imagenet-200
"""
import argparse
import os
import os.path as osp
import shutil
import sys
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from _converter_common import (extract_or_place, run_converter,  # noqa: E402
                               source_parser)
from tqdm import tqdm  # noqa: E402

from mergemix_mm.datasets.archives import place_file, write_lines  # noqa: E402
from mergemix_mm.datasets.tiny_imagenet import (  # noqa: E402
    TinyImageNet, check_tiny_imagenet_layout)

TOP = 'tiny-imagenet-200'
STAGING = osp.join('val', '_unsorted')


def _route(rel: str) -> Optional[str]:
    """Output path (relative to OUT) of an input file, or None to skip it."""
    parts = rel.split('/')
    if rel in ('wnids.txt', 'words.txt'):
        return rel
    if rel == 'val/val_annotations.txt':
        return osp.join('meta', 'val_annotations.txt')
    if len(parts) == 4 and parts[0] == 'train' and parts[2] == 'images':
        return osp.join('train', parts[1], parts[3])
    if len(parts) == 3 and parts[:2] == ['val', 'images']:
        return osp.join(STAGING, parts[2])
    return None


def _read_val_annotations(path: str) -> Dict[str, str]:
    labels = {}
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            fields = line.rstrip('\n').split('\t')
            if len(fields) < 2:
                raise ValueError(f'{path!r} line {lineno}: expected '
                                 f'"<file>\\t<wnid>\\t...", got {line!r}.')
            labels[fields[0]] = fields[1]
    return labels


def _index(folder: str, classes: Sequence[str], split: str) -> List[str]:
    index = {c: i for i, c in enumerate(classes)}
    lines = []
    for wnid in sorted(os.listdir(folder)):
        cdir = osp.join(folder, wnid)
        if not osp.isdir(cdir):
            continue
        if wnid not in index:
            raise ValueError(f'{split} folder {cdir!r} is not listed in '
                             'wnids.txt.')
        for fn in sorted(os.listdir(cdir)):
            # the files the dataset class lists when it scans the folders
            if fn.lower().endswith(TinyImageNet.IMG_EXTENSIONS):
                lines.append(f'{wnid}/{fn} {index[wnid]}')
    return lines


def prepare_tiny_imagenet(out: str,
                          archive: Optional[str] = None,
                          src_dir: Optional[str] = None,
                          mode: str = 'copy') -> List[str]:
    """Convert ``tiny-imagenet-200.zip`` (or its folder) into ``out``.

    Args:
        out (str): Output root.
        archive (str, optional): ``tiny-imagenet-200.zip``. Defaults to None.
        src_dir (str, optional): The extracted ``tiny-imagenet-200`` folder.
            Defaults to None.
        mode (str): How files from ``src_dir`` are placed. Defaults to
            ``'copy'``.

    Returns:
        list[str]: Problems found by the final check (empty on success).

    Raises:
        ValueError: If ``out`` is the folder read from ``src_dir`` (itself,
            or its ``tiny-imagenet-200`` sub-folder) or lies inside it: the
            layout is rewritten, ``train/<wnid>/images/`` becomes
            ``train/<wnid>/``, so the output must be another folder.
    """
    if src_dir is not None:
        src = src_dir
        if osp.isdir(osp.join(src_dir, TOP)):
            src = osp.join(src_dir, TOP)  # as extract_or_place reads it
        src, dst = osp.realpath(src), osp.realpath(out)
        if dst == src or dst.startswith(src + os.sep):
            raise ValueError(
                f'--src-dir {src_dir!r} and --out {out!r} are the same '
                'folder (or --out lies inside the folder read): the '
                'converter rewrites the layout (train/<wnid>/images/ -> '
                'train/<wnid>/, val images into class folders), so give '
                'another --out, e.g. '
                'data/tiny-imagenet-200-mm (add --mode symlink to avoid '
                'copying).')
    extract_or_place(out, archive, src_dir, mode, TOP,
                     '--archive (tiny-imagenet-200.zip)', 'tiny-imagenet',
                     route=_route, progress=True)

    wnids_file = osp.join(out, 'wnids.txt')
    ann_file = osp.join(out, 'meta', 'val_annotations.txt')
    for path, what in ((wnids_file, 'wnids.txt'),
                       (ann_file, 'val/val_annotations.txt')):
        if not osp.isfile(path):
            raise FileNotFoundError(f'the input has no {what}; is it '
                                    'tiny-imagenet-200.zip?')
    with open(wnids_file, encoding='utf-8') as f:
        classes = sorted(ln.strip() for ln in f if ln.strip())

    # Move the flat validation images into class folders.
    staging = osp.join(out, STAGING)
    labels = _read_val_annotations(ann_file)
    if osp.isdir(staging):
        unlabelled = []
        for fn in tqdm(sorted(os.listdir(staging)), desc='val',
                       file=sys.stderr):
            if fn not in labels:
                unlabelled.append(fn)
                continue
            place_file(osp.join(staging, fn),
                       osp.join(out, 'val', labels[fn], fn), 'move')
        if unlabelled:
            raise ValueError(f'{len(unlabelled)} validation image(s) are not '
                             'in val_annotations.txt, e.g. '
                             f'{unlabelled[0]!r}.')
        shutil.rmtree(staging)

    write_lines(osp.join(out, 'meta', 'classes.txt'), classes)
    for split in ('train', 'val'):
        folder = osp.join(out, split)
        if osp.isdir(folder):
            write_lines(
                osp.join(out, 'meta', f'{split}.txt'),
                _index(folder, classes, split))
    return check_tiny_imagenet_layout(out)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    return source_parser(
        'Prepare Tiny-ImageNet-200 from a local archive; never downloads.',
        'path of tiny-imagenet-200.zip',
        'the extracted tiny-imagenet-200 folder', 'data/tiny-imagenet-200',
        modes=('copy', 'symlink', 'hardlink')).parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    return run_converter(
        'Tiny-ImageNet', args, check_tiny_imagenet_layout,
        lambda: prepare_tiny_imagenet(args.out, archive=args.archive,
                                      src_dir=args.src_dir, mode=args.mode))


if __name__ == '__main__':
    sys.exit(main())
