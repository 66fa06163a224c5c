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
import os.path as osp
import sys
from typing import List, Optional, Sequence

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from _converter_common import (extract_or_place, run_converter,  # noqa: E402
                               source_parser)

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
    extract_or_place(out, archive, src_dir, mode, TOP,
                     '--archive (CUB_200_2011.tgz)', 'CUB-200-2011')
    return check_cub_layout(out)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    return source_parser(
        'Prepare CUB-200-2011 from a local archive; never downloads.',
        'path of CUB_200_2011.tgz', 'an extracted CUB_200_2011 folder',
        'data/CUB_200_2011').parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    return run_converter(
        'CUB-200-2011', args, check_cub_layout,
        lambda: prepare_cub(args.out, archive=args.archive,
                            src_dir=args.src_dir, mode=args.mode))


if __name__ == '__main__':
    sys.exit(main())
