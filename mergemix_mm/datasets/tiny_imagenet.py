"""Tiny-ImageNet-200 (64x64, 200 classes) from a prepared local folder."""
import os.path as osp
from typing import List, Optional, Sequence

from mmpretrain.datasets import CustomDataset
from mmpretrain.registry import DATASETS

from .layout import (is_local_path, missing_images_problems,
                     parse_annotation_lines, raise_if_problems, read_lines)
from .safe_loading import enable_skip_bad_samples

__all__ = ['TinyImageNet', 'check_tiny_imagenet_layout', 'TINY_SPLITS']

TINY_SPLITS = ('train', 'val')
TINY_CLASSES_FILE = osp.join('meta', 'classes.txt')
TINY_PREPARE_CMD = ('python tools/dataset_converters/prepare_tiny_imagenet.py '
                    '--archive /path/to/tiny-imagenet-200.zip --out {root}')


def _path_problems(data_root: str, splits: Sequence[str]) -> List[str]:
    if not osp.isdir(data_root):
        return [f'dataset root {data_root!r} does not exist']
    problems = []
    classes = osp.join(data_root, TINY_CLASSES_FILE)
    if not osp.isfile(classes):
        problems.append(f'missing class list {classes!r}')
    for split in splits:
        folder = osp.join(data_root, split)
        ann = osp.join(data_root, 'meta', f'{split}.txt')
        if not osp.isdir(folder):
            problems.append(f'split {split!r}: missing image folder '
                            f'{folder!r}')
        if not osp.isfile(ann):
            problems.append(f'split {split!r}: missing annotation file '
                            f'{ann!r}')
    return problems


def check_tiny_imagenet_layout(data_root: str,
                               splits: Sequence[str] = TINY_SPLITS,
                               max_images_checked: Optional[int] = 100
                               ) -> List[str]:
    """List what is missing in a prepared Tiny-ImageNet folder.

    Args:
        data_root (str): Dataset root (the converter's ``--out``).
        splits (Sequence[str]): Splits to check. Defaults to
            ``('train', 'val')``.
        max_images_checked (int, optional): Listed images to stat per split;
            ``None`` checks all. Defaults to 100.

    Returns:
        list[str]: One message per problem; empty when ready.
    """
    problems = _path_problems(data_root, splits)
    if problems:
        return problems
    num_classes = len(read_lines(osp.join(data_root, TINY_CLASSES_FILE)))
    for split in splits:
        ann = osp.join(data_root, 'meta', f'{split}.txt')
        lines = read_lines(ann)
        if not lines:
            problems.append(f'split {split!r}: {ann!r} is empty')
            continue
        entries = parse_annotation_lines(lines)
        bad = [ln for ln, (_, label) in zip(lines, entries)
               if label is None or label >= num_classes]
        if bad:
            problems.append(
                f'split {split!r}: {ann!r} has lines that are not "<path> '
                f'<label in [0, {num_classes})>", e.g. {bad[0]!r}')
            continue
        problems += missing_images_problems(
            split, [osp.join(data_root, split, path) for path, _ in entries],
            max_images_checked)
    return problems


@DATASETS.register_module()
class TinyImageNet(CustomDataset):
    """Tiny-ImageNet-200 from the folder ``prepare_tiny_imagenet.py`` writes.

    Layout::

        data_root/
        ├── train/<wnid>/<wnid>_<k>.JPEG     # 500 per class
        ├── val/<wnid>/val_<k>.JPEG          # 50 per class
        └── meta/
            ├── classes.txt                  # sorted wnids; line i = label i
            ├── train.txt                    # "<wnid>/<file> <label>"
            └── val.txt

    Class names are the wnids of ``meta/classes.txt``.

    Args:
        data_root (str): Dataset root.
        split (str): ``'train'`` or ``'val'``. Defaults to ``'train'``.
        skip_bad_samples (bool): Skip unreadable training images with a
            logged count (needs ``SafeLoadImageFromFile``). Defaults to False.
        metainfo (dict, optional): Meta information overriding the class
            names. Defaults to None.
        **kwargs: Other arguments of mmpretrain's ``CustomDataset``
            (``pipeline``, ``test_mode``, ...).
    """

    IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png')

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 skip_bad_samples: bool = False,
                 metainfo: Optional[dict] = None,
                 **kwargs):
        if split not in TINY_SPLITS:
            raise ValueError(f"TinyImageNet: split={split!r} is not valid; "
                             "use 'train' or 'val'.")
        for key in ('ann_file', 'data_prefix'):
            if key in kwargs:
                raise TypeError(f'TinyImageNet sets {key} from split; remove '
                                f'{key}={kwargs[key]!r}.')
        self.split = split
        if is_local_path(data_root):
            raise_if_problems('TinyImageNet', data_root,
                              _path_problems(data_root, [split]),
                              TINY_PREPARE_CMD.format(root=data_root))
            if metainfo is None or 'classes' not in metainfo:
                classes = tuple(
                    read_lines(osp.join(data_root, TINY_CLASSES_FILE)))
                metainfo = {**(metainfo or {}), 'classes': classes}
        super().__init__(
            data_root=data_root,
            data_prefix=split,
            ann_file=osp.join('meta', f'{split}.txt'),
            metainfo=metainfo,
            extensions=self.IMG_EXTENSIONS,
            **kwargs)
        if skip_bad_samples:
            enable_skip_bad_samples(
                self, 'TinyImageNet', evaluation=split == 'val')

    def extra_repr(self) -> List[str]:
        return [
            f'Split: \t{self.split}',
            f'Root of dataset: \t{self.data_root}'
        ]
