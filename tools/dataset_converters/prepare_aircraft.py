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
import os
import os.path as osp
import sys
from typing import List, Optional, Sequence

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

from mergemix_mm.datasets.archives import (  # noqa: E402
    iter_archive_files, place_file, report_check, require_file,
    strip_top_folder, write_fileobj)
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
    if (archive is None) == (src_dir is None):
        raise ValueError('give exactly one of --archive and --src-dir.')
    if archive is not None:
        require_file(archive, '--archive (fgvc-aircraft-2013b.tar.gz)')
        for name, f in iter_archive_files(archive, desc='FGVC-Aircraft'):
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
    return check_aircraft_layout(out)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Prepare FGVC-Aircraft from a local archive; never '
        'downloads.')
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument('--archive', help='path of fgvc-aircraft-2013b.tar.gz')
    src.add_argument('--src-dir', help='an extracted fgvc-aircraft-2013b '
                     'folder')
    src.add_argument(
        '--check',
        metavar='DIR',
        help='only validate a prepared folder and name what is missing')
    parser.add_argument(
        '--out', default='data/fgvc-aircraft-2013b', help='output folder')
    parser.add_argument(
        '--mode',
        default='copy',
        choices=['copy', 'symlink', 'hardlink', 'move'],
        help='how files from --src-dir are placed')
    parser.add_argument(
        '--splits',
        nargs='+',
        default=list(AIRCRAFT_SPLITS),
        choices=list(AIRCRAFT_SPLITS),
        help='splits required by --check')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.check:
        return report_check('FGVC-Aircraft', args.check,
                            check_aircraft_layout(args.check, args.splits))
    try:
        problems = prepare_aircraft(
            args.out, archive=args.archive, src_dir=args.src_dir, mode=args.mode)
    except (ValueError, FileNotFoundError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    return report_check('FGVC-Aircraft', args.out, problems)


if __name__ == '__main__':
    sys.exit(main())
