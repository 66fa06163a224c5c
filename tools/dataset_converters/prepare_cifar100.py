"""Prepare CIFAR-100 from the official python tarball already on disk.

Never downloads. Writes ``OUT/cifar-100-python/{train,test,meta}``, the
layout read by ``CIFAR100Local`` (configs/_base_/datasets/
cifar100_bs100_224px.py uses ``data_root='data/cifar100'``).

Examples:
    python tools/dataset_converters/prepare_cifar100.py \
        --archive ~/Downloads/cifar-100-python.tar.gz --out data/cifar100
    python tools/dataset_converters/prepare_cifar100.py \
        --src-dir ~/datasets/cifar-100-python --out data/cifar100
    python tools/dataset_converters/prepare_cifar100.py --check data/cifar100
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional, Sequence

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from _converter_common import (run_converter, source_folder,  # noqa: E402
                               source_parser)

from mergemix_mm.datasets.archives import (iter_archive_files,  # noqa: E402
                                           place_file, write_fileobj)
from mergemix_mm.datasets.cifar100 import (CIFAR100_FOLDER,  # noqa: E402
                                           check_cifar100_layout)

#: Files of the official tarball that are kept.
KEEP = ('train', 'test', 'meta')


def prepare_cifar100(out: str,
                     archive: Optional[str] = None,
                     src_dir: Optional[str] = None,
                     mode: str = 'copy') -> List[str]:
    """Extract / place the CIFAR-100 python files under ``out``.

    Args:
        out (str): Output root; files go to ``out/cifar-100-python/``.
        archive (str, optional): ``cifar-100-python.tar.gz``. Defaults to
            None.
        src_dir (str, optional): An extracted ``cifar-100-python`` folder
            (used when ``archive`` is None). Defaults to None.
        mode (str): How files from ``src_dir`` are placed: ``'copy'``,
            ``'symlink'``, ``'hardlink'`` or ``'move'``. Defaults to
            ``'copy'``.

    Returns:
        list[str]: Problems found by the final check (empty on success).
    """
    folder = source_folder(archive, src_dir,
                           '--archive (cifar-100-python.tar.gz)',
                           CIFAR100_FOLDER)
    dest = osp.join(out, CIFAR100_FOLDER)
    written = set()
    if folder is None:
        for name, f in iter_archive_files(archive, desc='cifar-100'):
            base = osp.basename(name)
            parent = osp.basename(osp.dirname(name))
            if base in KEEP and parent in ('', CIFAR100_FOLDER):
                write_fileobj(f, osp.join(dest, base))
                written.add(base)
    else:
        for base in KEEP:
            if osp.isfile(osp.join(folder, base)):
                place_file(osp.join(folder, base), osp.join(dest, base), mode)
                written.add(base)
    missing = [k for k in KEEP if k not in written]
    if not written:
        source = (f'--archive: {archive!r}' if folder is None else
                  f'--src-dir: {src_dir!r}')
        raise ValueError(
            f'{source} holds none of the files {", ".join(KEEP)} of '
            f'{CIFAR100_FOLDER}/; nothing was written.')
    if missing:
        print(f'warning: the input has no {", ".join(missing)} file(s) of '
              'cifar-100-python/', file=sys.stderr)
    return check_cifar100_layout(out)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    return source_parser(
        'Prepare CIFAR-100 (python version) from a local archive; never '
        'downloads.', 'path of cifar-100-python.tar.gz',
        'an extracted cifar-100-python folder', 'data/cifar100',
        out_help='output root folder').parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    return run_converter(
        'CIFAR-100', args, check_cifar100_layout,
        lambda: prepare_cifar100(args.out, archive=args.archive,
                                 src_dir=args.src_dir, mode=args.mode))


if __name__ == '__main__':
    sys.exit(main())
