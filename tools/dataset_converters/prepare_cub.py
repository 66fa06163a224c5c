"""Prepare CUB-200-2011 from ``CUB_200_2011.tgz`` already on disk.

Never downloads. The archive's ``CUB_200_2011/`` folder becomes ``OUT``
(files outside it, such as the top-level ``attributes.txt``, are written to
``OUT`` too), which is the layout of ``CUBLocal`` / mmpretrain ``CUB``::

    OUT/                       (e.g. data/CUB_200_2011)
    ├── images/<class>/*.jpg
    ├── images.txt
    ├── image_class_labels.txt
    ├── train_test_split.txt
    └── classes.txt, bounding_boxes.txt, parts/, attributes/, README

Examples:
    python tools/dataset_converters/prepare_cub.py \
        --archive CUB_200_2011.tgz --out data/CUB_200_2011
    python tools/dataset_converters/prepare_cub.py --check data/CUB_200_2011
"""
import argparse
import os
import os.path as osp
import sys
from typing import List, Optional, Sequence

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

from mergemix_mm.datasets.archives import (  # noqa: E402
    iter_archive_files, place_file, report_check, require_file,
    strip_top_folder, write_fileobj)
from mergemix_mm.datasets.fine_grained import check_cub_layout  # noqa: E402

TOP = 'CUB_200_2011'


def prepare_cub(out: str,
                archive: Optional[str] = None,
                src_dir: Optional[str] = None,
                mode: str = 'copy') -> List[str]:
    """Extract ``CUB_200_2011.tgz`` (or place an extracted folder) to ``out``.

    Args:
        out (str): Output folder (the ``CUB_200_2011`` root).
        archive (str, optional): ``CUB_200_2011.tgz``. Defaults to None.
        src_dir (str, optional): An extracted ``CUB_200_2011`` folder.
            Defaults to None.
        mode (str): How files from ``src_dir`` are placed. Defaults to
            ``'copy'``.

    Returns:
        list[str]: Problems found by the final check (empty on success).
    """
    if (archive is None) == (src_dir is None):
        raise ValueError('give exactly one of --archive and --src-dir.')
    if archive is not None:
        require_file(archive, '--archive (CUB_200_2011.tgz)')
        for name, f in iter_archive_files(archive, desc='CUB-200-2011'):
            write_fileobj(f, osp.join(out, strip_top_folder(name, TOP)))
    else:
        if not osp.isdir(src_dir):
            raise FileNotFoundError(f'--src-dir: {src_dir!r} does not exist.')
        if osp.isdir(osp.join(src_dir, TOP)):
            src_dir = osp.join(src_dir, TOP)
        for root, _, files in os.walk(src_dir):
            for fn in files:
                src = osp.join(root, fn)
                place_file(src, osp.join(out, osp.relpath(src, src_dir)), mode)
    return check_cub_layout(out)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Prepare CUB-200-2011 from a local archive; never '
        'downloads.')
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument('--archive', help='path of CUB_200_2011.tgz')
    src.add_argument('--src-dir', help='an extracted CUB_200_2011 folder')
    src.add_argument(
        '--check',
        metavar='DIR',
        help='only validate a prepared folder and name what is missing')
    parser.add_argument(
        '--out', default='data/CUB_200_2011', help='output folder')
    parser.add_argument(
        '--mode',
        default='copy',
        choices=['copy', 'symlink', 'hardlink', 'move'],
        help='how files from --src-dir are placed')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.check:
        return report_check('CUB-200-2011', args.check,
                            check_cub_layout(args.check))
    try:
        problems = prepare_cub(
            args.out, archive=args.archive, src_dir=args.src_dir, mode=args.mode)
    except (ValueError, FileNotFoundError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    return report_check('CUB-200-2011', args.out, problems)


if __name__ == '__main__':
    sys.exit(main())
