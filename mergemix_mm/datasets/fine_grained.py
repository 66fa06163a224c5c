"""CUB-200-2011, Stanford Cars and FGVC-Aircraft with layout checks.

Thin subclasses of mmpretrain's ``CUB``, ``StanfordCars`` and
``FGVCAircraft``: the file layouts and label conventions are mmpretrain's,
but a missing root or annotation file raises
:class:`~.layout.DatasetLayoutError` (a ``FileNotFoundError``) naming each
path and the offline converter command (mmpretrain's ``StanfordCars`` only
says "incorrectly organized"), and ``skip_bad_samples=True`` skips unreadable
images during training.
"""
import os.path as osp
from typing import Callable, List, Optional, Sequence

from mmpretrain.datasets import CUB, FGVCAircraft, StanfordCars
from mmpretrain.datasets.categories import FGVCAIRCRAFT_CATEGORIES
from mmpretrain.registry import DATASETS

from .layout import (is_local_path, missing_images_problems,
                     raise_if_problems, read_lines)
from .safe_loading import enable_skip_bad_samples

__all__ = [
    'CUBLocal', 'StanfordCarsLocal', 'FGVCAircraftLocal', 'check_cub_layout',
    'check_stanford_cars_layout', 'check_aircraft_layout', 'CUB_FILES',
    'CARS_SPLIT_FILES', 'AIRCRAFT_SPLITS'
]


def _check_split_and_root(name: str, data_root: str, split: str,
                          splits: Sequence[str],
                          problems_of: Callable[[], List[str]],
                          prepare_cmd: str) -> None:
    """The ``__init__`` checks of the ``*Local`` datasets below.

    Raises ValueError if ``split`` is not one of ``splits``, and, for a local
    ``data_root``, :class:`~.layout.DatasetLayoutError` listing
    ``problems_of()`` with the converter command ``prepare_cmd`` (formatted
    with ``root``).
    """
    if split not in splits:
        use = (f'{splits[0]!r} or {splits[1]!r}'
               if len(splits) == 2 else f'one of {tuple(splits)}')
        raise ValueError(f'{name}: split={split!r} is not valid; use {use}.')
    if is_local_path(data_root):
        raise_if_problems(name, data_root, problems_of(),
                          prepare_cmd.format(root=data_root))


# ----------------------------------------------------------------------------
# CUB-200-2011
# ----------------------------------------------------------------------------
#: Files of ``CUB_200_2011/`` that the dataset reads.
CUB_FILES = ('images.txt', 'image_class_labels.txt', 'train_test_split.txt')
CUB_PREPARE_CMD = ('python tools/dataset_converters/prepare_cub.py '
                   '--archive /path/to/CUB_200_2011.tgz --out {root}')


def _id_table(path: str) -> dict:
    table = {}
    for line in read_lines(path):
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise ValueError(f'{path!r}: line {line!r} is not "<id> <value>"')
        table[parts[0]] = parts[1]
    return table


def _cub_label_problems(labels: dict, path: str) -> List[str]:
    """Class ids of ``image_class_labels.txt`` outside CUB's 1-based
    ``1..200`` (a 0-based file would shift every label by one)."""
    bad = [(i, v) for i, v in labels.items()
           if not v.strip().isdigit() or not 1 <= int(v) <= 200]
    if not bad:
        return []
    shown = ', '.join(f'image {i}: {v!r}' for i, v in bad[:3])
    return [f'{path!r}: {len(bad)} class id(s) outside 1..200 (CUB numbers '
            f'its classes from 1), e.g. {shown}']


def _cub_problems(data_root: str, where: str) -> List[str]:
    """Path-level problems of a CUB folder; ``where`` (e.g. ``"split
    'train'"``) starts the messages about annotation files."""
    if not osp.isdir(data_root):
        return [f'dataset root {data_root!r} does not exist']
    problems = [
        f'{where}: missing annotation file {osp.join(data_root, n)!r}'
        for n in CUB_FILES if not osp.isfile(osp.join(data_root, n))
    ]
    images_dir = osp.join(data_root, 'images')
    if not osp.isdir(images_dir):
        problems.append(f'missing image folder {images_dir!r}')
    return problems


def check_cub_layout(data_root: str,
                     splits: Sequence[str] = ('train', 'test'),
                     max_images_checked: Optional[int] = 100) -> List[str]:
    """List what is missing in a CUB-200-2011 folder (``CUB_200_2011/``).

    Args:
        data_root (str): The ``CUB_200_2011`` folder.
        splits (Sequence[str]): Splits that must have images. Defaults to
            ``('train', 'test')``.
        max_images_checked (int, optional): Listed images to stat per split;
            ``None`` checks all. Defaults to 100.

    Returns:
        list[str]: One message per problem; empty when ready.
    """
    problems = _cub_problems(data_root, f'splits {"/".join(splits)}')
    if problems:
        return problems
    images_dir = osp.join(data_root, 'images')
    try:
        images = _id_table(osp.join(data_root, 'images.txt'))
        labels = _id_table(osp.join(data_root, 'image_class_labels.txt'))
        split_of = _id_table(osp.join(data_root, 'train_test_split.txt'))
    except ValueError as err:
        return [str(err)]
    problems = _cub_label_problems(
        labels, osp.join(data_root, 'image_class_labels.txt'))
    if problems:
        return problems
    if not images.keys() == labels.keys() == split_of.keys():
        return [
            'images.txt, image_class_labels.txt and train_test_split.txt '
            f'list different image ids ({len(images)}, {len(labels)} and '
            f'{len(split_of)} ids)'
        ]
    for split in splits:
        flag = {'train': '1', 'test': '0'}[split]
        ids = [i for i, s in split_of.items() if s == flag]
        if not ids:
            problems.append(f'split {split!r}: train_test_split.txt marks no '
                            f'image as {split} (flag {flag})')
            continue
        problems += missing_images_problems(
            split, [osp.join(images_dir, images[i]) for i in ids],
            max_images_checked)
    return problems


@DATASETS.register_module()
class CUBLocal(CUB):
    """mmpretrain's ``CUB`` with a layout check and bad-sample skipping.

    Layout (``CUB_200_2011.tgz`` extracted, see ``prepare_cub.py``)::

        CUB_200_2011/
        ├── images/<class folder>/*.jpg
        ├── images.txt
        ├── image_class_labels.txt
        └── train_test_split.txt

    Args:
        data_root (str): The ``CUB_200_2011`` folder.
        split (str): ``'train'`` or ``'test'``. Defaults to ``'train'``.
        skip_bad_samples (bool): Skip unreadable training images with a
            logged count (needs ``SafeLoadImageFromFile``). Defaults to False.
        **kwargs: Other arguments of mmpretrain's ``CUB``.
    """

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 skip_bad_samples: bool = False,
                 **kwargs):
        _check_split_and_root(
            'CUBLocal', data_root, split, ('train', 'test'),
            lambda: _cub_problems(data_root, f'split {split!r}'),
            CUB_PREPARE_CMD)
        super().__init__(data_root=data_root, split=split, **kwargs)
        if skip_bad_samples:
            enable_skip_bad_samples(
                self, 'CUBLocal', evaluation=split == 'test')

    def load_data_list(self) -> list:
        """mmpretrain's list, refused (naming the file) when a class id is
        outside CUB's ``1..200``."""
        data_list = super().load_data_list()
        # the ids mmpretrain just read (it subtracts 1), not a second read
        labels = {osp.basename(d['img_path']): str(d['gt_label'] + 1)
                  for d in data_list}
        problems = _cub_label_problems(
            labels, osp.join(self.data_root, 'image_class_labels.txt'))
        if problems:
            raise ValueError(f'CUBLocal: {problems[0]}; prepare the folder '
                             'from the official archive with '
                             'tools/dataset_converters/prepare_cub.py')
        return data_list


# ----------------------------------------------------------------------------
# Stanford Cars
# ----------------------------------------------------------------------------
#: Layout B (official train/test archives + devkit): per split, image folder
#: and annotation file (relative to the dataset root).
CARS_SPLIT_FILES = {
    'train': ('cars_train', osp.join('devkit', 'cars_train_annos.mat')),
    'test': ('cars_test', osp.join('devkit',
                                   'cars_test_annos_withlabels.mat')),
}
#: Layout A (``car_ims.tgz`` + ``cars_annos.mat``).
CARS_ALL_ANNOS = 'cars_annos.mat'
CARS_ALL_IMAGES = 'car_ims'
CARS_PREPARE_CMD = (
    'python tools/dataset_converters/prepare_stanford_cars.py --archives '
    '/path/to/cars_train.tgz /path/to/cars_test.tgz /path/to/car_devkit.tgz '
    '/path/to/cars_test_annos_withlabels.mat --out {root}')


def _cars_problems(data_root: str, splits: Sequence[str]) -> List[str]:
    """Path-level problems of a Stanford Cars folder (either layout)."""
    if not osp.isdir(data_root):
        return [f'dataset root {data_root!r} does not exist']
    if osp.isfile(osp.join(data_root, CARS_ALL_ANNOS)):
        images = osp.join(data_root, CARS_ALL_IMAGES)
        if not osp.isdir(images):
            return [f'splits {"/".join(splits)}: {CARS_ALL_ANNOS} found but '
                    f'the image folder {images!r} is missing']
        return []
    problems = []
    for split in splits:
        img_dir, ann = CARS_SPLIT_FILES[split]
        if not osp.isdir(osp.join(data_root, img_dir)):
            problems.append(f'split {split!r}: missing image folder '
                            f'{osp.join(data_root, img_dir)!r}')
        if not osp.isfile(osp.join(data_root, ann)):
            extra = (' (distributed separately from the devkit as '
                     'cars_test_annos_withlabels.mat)') if split == 'test' \
                else ''
            problems.append(f'split {split!r}: missing annotation file '
                            f'{osp.join(data_root, ann)!r}{extra}')
    if problems:
        problems.append(
            f'(alternatively the single-file layout: {CARS_ALL_ANNOS} and '
            f'{CARS_ALL_IMAGES}/ in {data_root!r})')
    return problems


def check_stanford_cars_layout(data_root: str,
                               splits: Sequence[str] = ('train', 'test'),
                               max_images_checked: Optional[int] = 100
                               ) -> List[str]:
    """List what is missing in a Stanford Cars folder (either layout).

    Args:
        data_root (str): Dataset root.
        splits (Sequence[str]): Splits to check. Defaults to
            ``('train', 'test')``.
        max_images_checked (int, optional): Listed images to stat per split;
            ``None`` checks all. Defaults to 100.

    Returns:
        list[str]: One message per problem; empty when ready.
    """
    problems = _cars_problems(data_root, splits)
    if problems:
        return problems
    for split in splits:
        try:
            ds = StanfordCars(data_root=data_root, split=split, lazy_init=True)
            data_list = ds.load_data_list()
        except Exception as err:  # noqa: BLE001 - reported, not raised
            problems.append(f'split {split!r}: cannot read the annotations: '
                            f'{type(err).__name__}: {err}')
            continue
        if not data_list:
            problems.append(f'split {split!r}: the annotations list no image')
            continue
        problems += missing_images_problems(
            split, [d['img_path'] for d in data_list], max_images_checked)
    return problems


@DATASETS.register_module()
class StanfordCarsLocal(StanfordCars):
    """mmpretrain's ``StanfordCars`` with a clear layout check.

    Two layouts, as in mmpretrain::

        Stanford_Cars/
        ├── car_ims/000001.jpg ...
        └── cars_annos.mat

    or::

        Stanford_Cars/
        ├── cars_train/00001.jpg ...
        ├── cars_test/00001.jpg ...
        └── devkit/
            ├── cars_train_annos.mat
            └── cars_test_annos_withlabels.mat

    Args:
        data_root (str): Dataset root.
        split (str): ``'train'`` or ``'test'``. Defaults to ``'train'``.
        skip_bad_samples (bool): Skip unreadable training images with a
            logged count (needs ``SafeLoadImageFromFile``). Defaults to False.
        **kwargs: Other arguments of mmpretrain's ``StanfordCars``.
    """

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 skip_bad_samples: bool = False,
                 **kwargs):
        _check_split_and_root('StanfordCarsLocal', data_root, split,
                              ('train', 'test'),
                              lambda: _cars_problems(data_root, [split]),
                              CARS_PREPARE_CMD)
        super().__init__(data_root=data_root, split=split, **kwargs)
        if skip_bad_samples:
            enable_skip_bad_samples(
                self, 'StanfordCarsLocal', evaluation=split == 'test')


# ----------------------------------------------------------------------------
# FGVC-Aircraft
# ----------------------------------------------------------------------------
AIRCRAFT_SPLITS = ('train', 'val', 'trainval', 'test')
AIRCRAFT_PREPARE_CMD = (
    'python tools/dataset_converters/prepare_aircraft.py '
    '--archive /path/to/fgvc-aircraft-2013b.tar.gz --out {root}')


def _aircraft_ann(data_root: str, split: str) -> str:
    return osp.join(data_root, 'data', f'images_variant_{split}.txt')


def _aircraft_split_problems(data_root: str, split: str) -> List[str]:
    """Path-level problems of one split of an FGVC-Aircraft folder."""
    if not osp.isdir(data_root):
        return [f'dataset root {data_root!r} does not exist']
    problems = []
    ann = _aircraft_ann(data_root, split)
    if not osp.isfile(ann):
        problems.append(f'split {split!r}: missing annotation file {ann!r}')
    images = osp.join(data_root, 'data', 'images')
    if not osp.isdir(images):
        problems.append(f'missing image folder {images!r}')
    return problems


def check_aircraft_layout(data_root: str,
                          splits: Sequence[str] = AIRCRAFT_SPLITS,
                          max_images_checked: Optional[int] = 100
                          ) -> List[str]:
    """List what is missing in an FGVC-Aircraft folder.

    Args:
        data_root (str): The ``fgvc-aircraft-2013b`` folder.
        splits (Sequence[str]): Splits to check. Defaults to all four.
        max_images_checked (int, optional): Listed images to stat per split;
            ``None`` checks all. Defaults to 100.

    Returns:
        list[str]: One message per problem; empty when ready.
    """
    if not osp.isdir(data_root):
        return [f'dataset root {data_root!r} does not exist']
    images = osp.join(data_root, 'data', 'images')
    problems = []
    if not osp.isdir(images):
        problems.append(f'missing image folder {images!r}')
    known = set(FGVCAIRCRAFT_CATEGORIES)
    for split in splits:
        ann = _aircraft_ann(data_root, split)
        if not osp.isfile(ann):
            problems.append(f'split {split!r}: missing annotation file '
                            f'{ann!r}')
            continue
        entries = [ln.split(' ', 1) for ln in read_lines(ann)]
        if not entries:
            problems.append(f'split {split!r}: {ann!r} is empty')
            continue
        unknown = sorted({e[1] for e in entries if len(e) == 2} - known)
        if any(len(e) != 2 for e in entries) or unknown:
            problems.append(f'split {split!r}: {ann!r} has lines that are '
                            'not "<image id> <variant>" with one of the 100 '
                            f'variants (e.g. {unknown[:3]})')
            continue
        if osp.isdir(images):
            problems += missing_images_problems(
                split, [osp.join(images, f'{e[0]}.jpg') for e in entries],
                max_images_checked)
    return problems


@DATASETS.register_module()
class FGVCAircraftLocal(FGVCAircraft):
    """mmpretrain's ``FGVCAircraft`` with a layout check.

    Layout (``fgvc-aircraft-2013b.tar.gz`` extracted)::

        fgvc-aircraft-2013b/
        └── data/
            ├── images/<id>.jpg
            ├── images_variant_{train,val,trainval,test}.txt
            └── variants.txt

    Args:
        data_root (str): The ``fgvc-aircraft-2013b`` folder.
        split (str): ``'train'``, ``'val'``, ``'trainval'`` or ``'test'``.
            Defaults to ``'trainval'``.
        skip_bad_samples (bool): Skip unreadable training images with a
            logged count (needs ``SafeLoadImageFromFile``). Defaults to False.
        **kwargs: Other arguments of mmpretrain's ``FGVCAircraft``.
    """

    def __init__(self,
                 data_root: str,
                 split: str = 'trainval',
                 skip_bad_samples: bool = False,
                 **kwargs):
        _check_split_and_root(
            'FGVCAircraftLocal', data_root, split, AIRCRAFT_SPLITS,
            lambda: _aircraft_split_problems(data_root, split),
            AIRCRAFT_PREPARE_CMD)
        super().__init__(data_root=data_root, split=split, **kwargs)
        if skip_bad_samples:
            enable_skip_bad_samples(
                self, 'FGVCAircraftLocal', evaluation=split in ('val', 'test'))
