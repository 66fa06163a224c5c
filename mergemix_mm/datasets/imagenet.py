"""ImageNet-style folders with a layout check and the skip-bad-samples option.

:class:`ImageNetLocal` is mmpretrain's ``ImageNet`` plus

* a check before loading: a missing ``data_root``, split folder or annotation
  file raises :class:`~.layout.DatasetLayoutError` (a ``FileNotFoundError``)
  that names each path and the offline converter command;
* ``skip_bad_samples=True`` to skip unreadable images during training (with
  ``SafeLoadImageFromFile`` in the pipeline; see :mod:`.safe_loading`);
* class names from ``meta/classes.txt`` (written by the converter) when it
  lists a number of classes other than 1000, e.g. ImageNet-100 subsets.
"""
import os
import os.path as osp
from typing import List, Optional, Sequence, Union

from mmpretrain.datasets import ImageNet
from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
from mmpretrain.registry import DATASETS

from .layout import (is_local_path, parse_annotation_lines,
                     raise_if_problems, read_lines, sample_missing_files)
from .safe_loading import enable_skip_bad_samples

__all__ = ['ImageNetLocal', 'check_imagenet_layout', 'IMAGENET_SPLITS']

#: Splits of a prepared ImageNet folder that carry labels.
IMAGENET_SPLITS = ('train', 'val')
IMAGENET_CLASSES_FILE = osp.join('meta', 'classes.txt')

PREPARE_CMD = ('python tools/dataset_converters/prepare_imagenet.py '
               '--train-tar /path/to/ILSVRC2012_img_train.tar '
               '--val-tar /path/to/ILSVRC2012_img_val.tar '
               '--devkit /path/to/ILSVRC2012_devkit_t12.tar.gz --out {root}')


def _has_subfolders(path: str) -> bool:
    try:
        with os.scandir(path) as it:
            return any(e.is_dir() for e in it)
    except OSError:
        return False


def check_imagenet_layout(data_root: str,
                          splits: Sequence[str] = IMAGENET_SPLITS,
                          require_ann_file: bool = True,
                          max_images_checked: Optional[int] = 100
                          ) -> List[str]:
    """List what is missing in a prepared ImageNet-style folder.

    Layout (what ``prepare_imagenet.py`` writes)::

        data_root/
        ├── train/<wnid>/*.JPEG
        ├── val/<wnid>/*.JPEG
        └── meta/{train,val}.txt    # "<wnid>/<file> <label>" per line

    Args:
        data_root (str): Dataset root.
        splits (Sequence[str]): Splits to check. Defaults to
            ``('train', 'val')``.
        require_ann_file (bool): Require ``meta/<split>.txt``. If False, a
            split folder with class sub-folders is enough (mmpretrain then
            scans it). Defaults to True.
        max_images_checked (int, optional): How many listed images to stat
            per split (evenly spaced); ``None`` checks all. Defaults to 100.

    Returns:
        list[str]: One message per problem naming the split and the path.
    """
    if not osp.isdir(data_root):
        return [f'dataset root {data_root!r} does not exist']
    problems = []
    classes_file = osp.join(data_root, IMAGENET_CLASSES_FILE)
    num_classes = (len(read_lines(classes_file))
                   if osp.isfile(classes_file) else None)
    for split in splits:
        folder = osp.join(data_root, split)
        ann = osp.join(data_root, 'meta', f'{split}.txt')
        if not osp.isdir(folder):
            problems.append(f'split {split!r}: missing image folder '
                            f'{folder!r}')
            continue
        if not osp.isfile(ann):
            if require_ann_file:
                problems.append(f'split {split!r}: missing annotation file '
                                f'{ann!r}')
            elif not _has_subfolders(folder):
                problems.append(
                    f'split {split!r}: {folder!r} has no class sub-folders '
                    f'and there is no annotation file {ann!r} (a flat '
                    'folder needs labels; see prepare_imagenet.py '
                    '--val-labels/--devkit)')
            continue
        lines = read_lines(ann)
        if not lines:
            problems.append(f'split {split!r}: annotation file {ann!r} is '
                            'empty')
            continue
        rows = parse_annotation_lines(lines)
        bad = [ln for ln, (_, label) in zip(lines, rows) if label is None]
        if bad:
            problems.append(
                f'split {split!r}: annotation file {ann!r} has lines that are '
                f'not "<path> <label>" with a label >= 0, e.g. {bad[0]!r}')
            continue
        high = [] if num_classes is None else [
            ln for ln, (_, label) in zip(lines, rows) if label >= num_classes
        ]
        if high:
            problems.append(
                f'split {split!r}: annotation file {ann!r} has labels outside '
                f'the {num_classes} classes of {classes_file!r}, e.g. '
                f'{high[0]!r}')
            continue
        paths = [osp.join(folder, path) for path, _ in rows]
        missing = sample_missing_files(paths, max_images_checked)
        if missing:
            problems.append(
                f'split {split!r}: {len(missing)} image(s) listed in {ann!r} '
                f'do not exist, e.g. {missing[0]!r}')
    return problems


@DATASETS.register_module()
class ImageNetLocal(ImageNet):
    """mmpretrain's ``ImageNet`` with a layout check and bad-sample skipping.

    Both mmpretrain layouts are accepted: class sub-folders under
    ``data_root/<split>``, and/or an annotation file
    ``data_root/meta/<split>.txt`` (used when present). See
    :func:`check_imagenet_layout` and ``docs/datasets.md``.

    Args:
        data_root (str): Dataset root.
        split (str): ``'train'``, ``'val'`` or ``'test'`` (unlabelled).
            Defaults to ``'train'``.
        skip_bad_samples (bool): Skip unreadable images during training
            with a logged running count instead of raising (needs
            ``SafeLoadImageFromFile`` in the pipeline; ignored for the
            ``'val'``/``'test'`` splits and in test mode). Defaults to False.
        metainfo (dict, optional): Meta information (e.g. ``classes``).
            Defaults to None, i.e. the 1000 ImageNet classes or, if
            ``meta/classes.txt`` lists a different number, those entries.
        **kwargs: Other arguments of mmpretrain's ``ImageNet``
            (``data_prefix``, ``ann_file``, ``pipeline``, ...).

    Raises:
        FileNotFoundError: (:class:`~.layout.DatasetLayoutError`) naming the
            missing root, split folder or annotation file.
    """

    def __init__(self,
                 data_root: str = '',
                 split: str = 'train',
                 skip_bad_samples: bool = False,
                 metainfo: Optional[dict] = None,
                 data_prefix: Union[str, dict] = '',
                 ann_file: str = '',
                 **kwargs):
        if split not in ('train', 'val', 'test'):
            raise ValueError(
                f"ImageNetLocal: split={split!r} is not valid; use 'train', "
                "'val' or 'test'.")
        if not data_root:
            raise ValueError('ImageNetLocal: data_root is empty; set it to '
                             'the prepared folder (e.g. data/imagenet).')
        self.split = split
        if is_local_path(data_root):
            self._check_paths(data_root, split, data_prefix, ann_file)
            metainfo = self._classes_from_file(data_root, metainfo)
        super().__init__(
            data_root=data_root,
            split=split,
            metainfo=metainfo,
            data_prefix=data_prefix,
            ann_file=ann_file,
            **kwargs)
        if skip_bad_samples:
            enable_skip_bad_samples(
                self, 'ImageNetLocal', evaluation=split != 'train')

    @staticmethod
    def _check_paths(data_root: str, split: str, data_prefix, ann_file: str):
        cmd = PREPARE_CMD.format(root=data_root)
        if not osp.isdir(data_root):
            raise_if_problems('ImageNetLocal', data_root,
                              [f'dataset root {data_root!r} does not exist'],
                              cmd)
        problems = []
        prefix = data_prefix if isinstance(data_prefix, str) else \
            data_prefix.get('img_path', '')
        folder = osp.join(data_root, prefix or split)
        if not osp.isdir(folder):
            problems.append(f'split {split!r}: missing image folder '
                            f'{folder!r}')
        if ann_file:
            ann = osp.join(data_root, ann_file)
            if not osp.isfile(ann):
                problems.append(f'split {split!r}: missing annotation file '
                                f'{ann!r}')
        elif split != 'test' and osp.isdir(folder) and not osp.isfile(
                osp.join(data_root, 'meta', f'{split}.txt')) and \
                not _has_subfolders(folder):
            problems.append(
                f'split {split!r}: {folder!r} has no class sub-folders and '
                f"the annotation file {osp.join(data_root, 'meta', split)}"
                '.txt does not exist')
        raise_if_problems('ImageNetLocal', data_root, problems, cmd)

    @staticmethod
    def _classes_from_file(data_root: str,
                           metainfo: Optional[dict]) -> Optional[dict]:
        if metainfo is not None and 'classes' in metainfo:
            return metainfo
        path = osp.join(data_root, IMAGENET_CLASSES_FILE)
        if not osp.isfile(path):
            return metainfo
        classes = tuple(read_lines(path))
        if len(classes) == len(IMAGENET_CATEGORIES):
            return metainfo  # the standard 1000 classes: keep readable names
        return {**(metainfo or {}), 'classes': classes}
