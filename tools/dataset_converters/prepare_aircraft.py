"""Prepare FGVC-Aircraft from ``fgvc-aircraft-2013b.tar.gz`` already on disk.

Never downloads. The archive's ``fgvc-aircraft-2013b/`` folder becomes
``OUT``, the layout of ``FGVCAircraftLocal`` / mmpretrain ``FGVCAircraft``::

    OUT/                                  (e.g. data/fgvc-aircraft-2013b)
    └── data/
        ├── images/<image id>.jpg
        ├── images_variant_{train,val,trainval,test}.txt
        └── variants.txt, families.txt, manufacturers.txt, ...

Examples:
    python tools/dataset_converters/prepare_aircraft.py \
        --archive fgvc-aircraft-2013b.tar.gz --out data/fgvc-aircraft-2013b
    python tools/dataset_converters/prepare_aircraft.py \
        --check data/fgvc-aircraft-2013b
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional, Sequence

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from _converter_common import (extract_or_place, run_converter,  # noqa: E402
                               source_parser)

from mergemix_mm.datasets.fine_grained import (  # noqa: E402
    AIRCRAFT_SPLITS, check_aircraft_layout)

TOP = 'fgvc-aircraft-2013b'


def prepare_aircraft(out: str,
                     archive: Optional[str] = None,
                     src_dir: Optional[str] = None,
                     mode: str = 'copy') -> List[str]:
    """Extract the FGVC-Aircraft archive (or place a folder) to ``out``.

    Args:
        out (str): Output folder (the ``fgvc-aircraft-2013b`` root).
        archive (str, optional): ``fgvc-aircraft-2013b.tar.gz``. Defaults to
            None.
        src_dir (str, optional): An extracted ``fgvc-aircraft-2013b``
            folder. Defaults to None.
        mode (str): How files from ``src_dir`` are placed. Defaults to
            ``'copy'``.

    Returns:
        list[str]: Problems found by the final check (empty on success).
    """
    extract_or_place(out, archive, src_dir, mode, TOP,
                     '--archive (fgvc-aircraft-2013b.tar.gz)', 'FGVC-Aircraft')
    return check_aircraft_layout(out)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = source_parser(
        'Prepare FGVC-Aircraft from a local archive; never downloads.',
        'path of fgvc-aircraft-2013b.tar.gz',
        'an extracted fgvc-aircraft-2013b folder', 'data/fgvc-aircraft-2013b')
    parser.add_argument(
        '--splits',
        nargs='+',
        default=list(AIRCRAFT_SPLITS),
        choices=list(AIRCRAFT_SPLITS),
        help='splits required by --check')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    return run_converter(
        'FGVC-Aircraft', args,
        lambda root: check_aircraft_layout(root, args.splits),
        lambda: prepare_aircraft(args.out, archive=args.archive,
                                 src_dir=args.src_dir, mode=args.mode))


if __name__ == '__main__':
    sys.exit(main())
