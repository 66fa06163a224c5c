"""CIFAR-100 read from the local python pickles, never downloaded.

mmpretrain's ``CIFAR100`` defaults to ``download=True`` and checks the md5 of
every file, so a missing or re-packed copy triggers a network download that
fails offline. :class:`CIFAR100Local` only reads
``data_root/cifar-100-python/{train,test}`` in the official "python version"
format and names the missing file and the converter command otherwise.
"""
import os.path as osp
import pickle
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmpretrain.datasets import BaseDataset
from mmpretrain.datasets.categories import CIFAR100_CATEGORIES
from mmpretrain.registry import DATASETS

from .layout import is_local_path, raise_if_problems

__all__ = [
    'CIFAR100Local', 'CIFAR100_FOLDER', 'check_cifar100_layout',
    'load_cifar100_pickle'
]

#: Folder inside ``data_root`` (the name used by the official tarball).
CIFAR100_FOLDER = 'cifar-100-python'
#: File of each split inside :data:`CIFAR100_FOLDER`.
CIFAR100_SPLIT_FILES = {'train': 'train', 'test': 'test'}
#: Metadata file inside :data:`CIFAR100_FOLDER`.
CIFAR100_META_FILE = 'meta'
#: Official sizes, used only for information in ``--check``.
CIFAR100_SIZES = {'train': 50000, 'test': 10000}

PREPARE_CMD = ('python tools/dataset_converters/prepare_cifar100.py '
               '--archive /path/to/cifar-100-python.tar.gz --out {root}')


def _str_keys(obj: dict) -> Dict[str, object]:
    """Decode bytes keys (pickles written by Python 2 and read as bytes)."""
    return {(k.decode('latin1') if isinstance(k, bytes) else k): v
            for k, v in obj.items()}


def _load_pickle(path: str) -> dict:
    with open(path, 'rb') as f:
        # The official files were pickled by Python 2; latin1 keeps numpy
        # arrays intact (as torchvision and mmpretrain do).
        obj = pickle.load(f, encoding='latin1')
    if not isinstance(obj, dict):
        raise ValueError(
            f'CIFAR-100 file {path!r} does not hold a dict but a '
            f'{type(obj).__name__}; expected the "python version" format '
            '(cifar-100-python.tar.gz).')
    return _str_keys(obj)


def load_cifar100_pickle(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-100 split file (``train`` or ``test``).

    The file is a pickled dict with ``data`` (uint8, shape (N, 3072), each
    row 1024 red, then green, then blue values of a 32x32 image, row-major)
    and ``fine_labels`` (N ints in [0, 100)). Keys may be ``bytes`` or
    ``str``.

    Args:
        path (str): Path of the pickle.

    Returns:
        tuple: ``images`` (N, 32, 32, 3) uint8 RGB and ``labels`` (N,)
        int64.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the content is not in the expected format.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'CIFAR-100 file {path!r} does not exist.')
    entry = _load_pickle(path)
    for key in ('data', 'fine_labels'):
        if key not in entry:
            raise ValueError(
                f'CIFAR-100 file {path!r} has no {key!r} entry (keys: '
                f'{sorted(entry)}); expected the "python version" format.')
    data = np.asarray(entry['data'])
    labels = np.asarray(entry['fine_labels'], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(
            f'CIFAR-100 file {path!r}: data has dtype {data.dtype} and shape '
            f'{data.shape}; expected uint8 of shape (N, 3072).')
    if labels.shape != (data.shape[0], ):
        raise ValueError(
            f'CIFAR-100 file {path!r}: {labels.shape[0]} fine_labels for '
            f'{data.shape[0]} images.')
    if labels.size and (labels.min() < 0 or labels.max() >= 100):
        raise ValueError(
            f'CIFAR-100 file {path!r}: fine_labels span '
            f'[{labels.min()}, {labels.max()}]; expected values in [0, 100).')
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def load_cifar100_class_names(path: str) -> List[str]:
    """Read ``fine_label_names`` from the CIFAR-100 ``meta`` pickle.

    Args:
        path (str): Path of the ``meta`` file.

    Returns:
        list[str]: The 100 class names.
    """
    meta = _load_pickle(path)
    if 'fine_label_names' not in meta:
        raise ValueError(
            f'CIFAR-100 meta file {path!r} has no fine_label_names entry '
            f'(keys: {sorted(meta)}).')
    return [
        n.decode('latin1') if isinstance(n, bytes) else str(n)
        for n in meta['fine_label_names']
    ]


def check_cifar100_layout(data_root: str,
                          splits: Sequence[str] = ('train', 'test'),
                          read_files: bool = True,
                          with_meta: bool = True) -> List[str]:
    """List what is missing or malformed in a prepared CIFAR-100 folder.

    Args:
        data_root (str): Folder that should contain ``cifar-100-python/``.
        splits (Sequence[str]): Splits to check. Defaults to
            ``('train', 'test')``.
        read_files (bool): Also load each pickle and validate its content.
            Defaults to True.
        with_meta (bool): Also require the ``meta`` file. Defaults to True.

    Returns:
        list[str]: One message per problem, each naming the split and path;
        empty when the folder is ready.
    """
    problems = []
    folder = osp.join(data_root, CIFAR100_FOLDER)
    if not osp.isdir(data_root):
        return [f'dataset root {data_root!r} does not exist']
    if not osp.isdir(folder):
        return [
            f"folder {folder!r} does not exist (splits {', '.join(splits)} "
            'missing)'
        ]
    for split in splits:
        if split not in CIFAR100_SPLIT_FILES:
            raise ValueError(
                f"split={split!r} is not a CIFAR-100 split; use 'train' or "
                "'test'.")
        path = osp.join(folder, CIFAR100_SPLIT_FILES[split])
        if not osp.isfile(path):
            problems.append(f'split {split!r}: missing file {path!r}')
        elif read_files:
            try:
                load_cifar100_pickle(path)
            except (ValueError, pickle.UnpicklingError, EOFError) as err:
                problems.append(f'split {split!r}: unreadable file {path!r}: '
                                f'{err}')
    if with_meta:
        meta = osp.join(folder, CIFAR100_META_FILE)
        if not osp.isfile(meta):
            problems.append(f'meta: missing file {meta!r}')
        elif read_files:
            try:
                names = load_cifar100_class_names(meta)
                if len(names) != 100:
                    problems.append(f'meta: {meta!r} lists {len(names)} '
                                    'fine_label_names, expected 100')
            except (ValueError, pickle.UnpicklingError, EOFError) as err:
                problems.append(f'meta: unreadable file {meta!r}: {err}')
    return problems


@DATASETS.register_module()
class CIFAR100Local(BaseDataset):
    """CIFAR-100 from the local "python version" files; never downloads.

    Expected layout (what ``tools/dataset_converters/prepare_cifar100.py``
    writes from ``cifar-100-python.tar.gz``)::

        data_root/
        └── cifar-100-python/
            ├── train   # pickle: data uint8 (50000, 3072), fine_labels
            ├── test    # pickle: data uint8 (10000, 3072), fine_labels
            └── meta    # pickle: fine_label_names (not needed for loading)

    Images are served as 32x32 RGB uint8 arrays (``img``), so pipelines need
    no ``LoadImageFromFile`` and the data preprocessor uses
    ``to_rgb=False``. Class names are mmpretrain's ``CIFAR100_CATEGORIES``
    (identical to the official ``fine_label_names``).

    Args:
        data_root (str): Folder containing ``cifar-100-python/``.
        split (str): ``'train'`` or ``'test'``. Defaults to ``'train'``.
        pipeline (Sequence): Processing pipeline. Defaults to ().
        metainfo (dict, optional): Meta information overriding the class
            names. Defaults to None.
        **kwargs: Other arguments of :class:`mmpretrain.datasets.BaseDataset`
            (``test_mode``, ``lazy_init``, ...).

    Raises:
        FileNotFoundError: (:class:`~.layout.DatasetLayoutError`) if the
            split file is missing; the message names the path and the
            converter command.
    """

    METAINFO = {'classes': CIFAR100_CATEGORIES}

    def __init__(self,
                 data_root: str = '',
                 split: str = 'train',
                 pipeline: Sequence = (),
                 metainfo: Optional[dict] = None,
                 **kwargs):
        if split not in CIFAR100_SPLIT_FILES:
            raise ValueError(
                f"CIFAR100Local: split={split!r} is not valid; use 'train' or "
                "'test'.")
        if not data_root:
            raise ValueError(
                'CIFAR100Local: data_root is empty; set it to the folder that '
                f'contains {CIFAR100_FOLDER}/ (e.g. data/cifar100).')
        if 'download' in kwargs:
            raise TypeError(
                'CIFAR100Local never downloads; remove download='
                f"{kwargs['download']!r}. Prepare the files with "
                'tools/dataset_converters/prepare_cifar100.py.')
        self.split = split
        if is_local_path(data_root):
            raise_if_problems(
                'CIFAR100Local', data_root,
                check_cifar100_layout(
                    data_root, [split], read_files=False, with_meta=False),
                PREPARE_CMD.format(root=data_root))
        super().__init__(
            ann_file='',
            metainfo=metainfo,
            data_root=data_root,
            pipeline=pipeline,
            **kwargs)

    @property
    def split_file(self) -> str:
        """Path of the pickle of this split."""
        return osp.join(self.data_root, CIFAR100_FOLDER,
                        CIFAR100_SPLIT_FILES[self.split])

    def load_data_list(self) -> List[dict]:
        """Load the images and fine labels of the split."""
        images, labels = load_cifar100_pickle(self.split_file)
        return [
            dict(img=img, gt_label=int(label))
            for img, label in zip(images, labels)
        ]

    def extra_repr(self) -> List[str]:
        return [f'Split: \t{self.split}', f'Data file: \t{self.split_file}']
