"""Prepare Stanford Cars from the official files already on disk.

Never downloads (the original host has been offline for years; use the copy
you have). Accepts, in any order, the files of either official distribution:

* split layout: ``cars_train.tgz``, ``cars_test.tgz``, ``car_devkit.tgz`` and
  ``cars_test_annos_withlabels.mat`` (distributed separately; it is placed in
  ``devkit/``);
* single-file layout: ``car_ims.tgz`` and ``cars_annos.mat``.

Extracted folders (``cars_train/``, ``devkit/``, ...) may be given instead of
archives. Output, the layouts of ``StanfordCarsLocal`` / mmpretrain
``StanfordCars``::

    OUT/                              OUT/
    ├── cars_train/00001.jpg ...  or  ├── car_ims/000001.jpg ...
    ├── cars_test/00001.jpg ...       └── cars_annos.mat
    └── devkit/
        ├── cars_train_annos.mat
        ├── cars_test_annos_withlabels.mat
        └── cars_meta.mat, ...

Examples:
    python tools/dataset_converters/prepare_stanford_cars.py --archives \
        cars_train.tgz cars_test.tgz car_devkit.tgz \
        cars_test_annos_withlabels.mat --out data/stanford_cars
    python tools/dataset_converters/prepare_stanford_cars.py \
        --check data/stanford_cars
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional, Sequence

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from _converter_common import (add_check_arg, add_mode_arg,  # noqa: E402
                               iter_folder_files, run_converter)

from mergemix_mm.datasets.archives import (  # noqa: E402
    is_archive, iter_archive_files, place_file, require_file, write_fileobj)
from mergemix_mm.datasets.fine_grained import \
    check_stanford_cars_layout  # noqa: E402

#: Folders the archives contain at their top level.
TOP_FOLDERS = ('cars_train', 'cars_test', 'devkit', 'car_ims')


def _output_name(name: str) -> str:
    """Map an archive member / input-relative path to its output path."""
    parts = name.split('/')
    # Some re-uploads nest the folder twice (cars_train/cars_train/x.jpg).
    if len(parts) > 2 and parts[0] == parts[1] and parts[0] in TOP_FOLDERS:
        parts = parts[1:]
    if parts[-1] == 'cars_annos.mat':
        return 'cars_annos.mat'
    if parts[-1].endswith('.mat') and parts[0] != 'devkit':
        return 'devkit/' + parts[-1]
    return '/'.join(parts)


def prepare_stanford_cars(out: str,
                          inputs: Sequence[str],
                          mode: str = 'copy') -> List[str]:
    """Extract / place the Stanford Cars files under ``out``.

    Args:
        out (str): Output root.
        inputs (Sequence[str]): Archives (``.tgz``/``.tar``/``.zip``),
            ``.mat`` files and/or extracted folders.
        mode (str): How plain files and folders are placed. Defaults to
            ``'copy'``.

    Returns:
        list[str]: Problems found by the final check (empty on success).
    """
    if not inputs:
        raise ValueError('give at least one input with --archives.')
    for path in inputs:
        if osp.isdir(path):
            base = osp.basename(osp.normpath(path))
            count = 0
            for src, rel in iter_folder_files(path):
                if base in TOP_FOLDERS:
                    rel = f'{base}/{rel}'
                place_file(src, osp.join(out, _output_name(rel)), mode)
                count += 1
            if not count:
                raise ValueError(f'--archives: folder {path!r} holds no '
                                 'files.')
        elif path.lower().endswith('.mat'):
            require_file(path, '--archives (.mat annotation file)')
            place_file(path, osp.join(out, _output_name(osp.basename(path))),
                       mode)
        elif is_archive(path):
            require_file(path, '--archives')
            for name, f in iter_archive_files(path):
                write_fileobj(f, osp.join(out, _output_name(name)))
        else:
            raise ValueError(
                f'--archives: {path!r} is not an archive, a .mat file or a '
                'folder.')
    return check_stanford_cars_layout(out)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Prepare Stanford Cars from local files; never '
        'downloads.')
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument(
        '--archives',
        nargs='+',
        help='cars_train.tgz cars_test.tgz car_devkit.tgz '
        'cars_test_annos_withlabels.mat, or car_ims.tgz cars_annos.mat '
        '(extracted folders also accepted)')
    add_check_arg(src)
    parser.add_argument(
        '--out', default='data/stanford_cars', help='output folder')
    add_mode_arg(parser, 'how .mat files and folders are placed')
    parser.add_argument(
        '--splits',
        nargs='+',
        default=['train', 'test'],
        choices=['train', 'test'],
        help='splits required by --check')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    return run_converter(
        'Stanford Cars', args,
        lambda root: check_stanford_cars_layout(root, args.splits),
        lambda: prepare_stanford_cars(args.out, args.archives,
                                      mode=args.mode))


if __name__ == '__main__':
    sys.exit(main())
