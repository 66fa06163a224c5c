"""The UCI handwritten digits that ship inside scikit-learn, as an mmpretrain
dataset (real data, available offline)."""
from typing import List, Optional, Sequence, Tuple

import numpy as np
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS

__all__ = ['DigitsDataset', 'digits_split_indices', 'load_digits_images']

#: Number of samples in the UCI digits set bundled with scikit-learn.
NUM_DIGITS = 1797
#: Size of the fixed training split; the remaining 450 samples form the test
#: split.
NUM_TRAIN = 1347
#: Seed of the fixed permutation that defines the split.
SPLIT_SEED = 0


def digits_split_indices(split: str) -> np.ndarray:
    """Indices of the fixed train/test split of the 1,797 digits.

    The split is ``np.random.RandomState(0).permutation(1797)``: the first
    1,347 indices are ``'train'`` and the remaining 450 are ``'test'``.

    Args:
        split (str): ``'train'`` or ``'test'``.

    Returns:
        np.ndarray: Sample indices into ``sklearn.datasets.load_digits()``.
    """
    perm = np.random.RandomState(SPLIT_SEED).permutation(NUM_DIGITS)
    if split == 'train':
        return perm[:NUM_TRAIN]
    if split == 'test':
        return perm[NUM_TRAIN:]
    raise ValueError(f"split={split!r} is not valid; use 'train' or 'test'.")


def load_digits_images(split: str,
                       img_size: int = 32) -> Tuple[np.ndarray, np.ndarray]:
    """Load one split of the digits as uint8 RGB images.

    The 8x8 images (values 0-16) are scaled to 0-255 and resized to
    ``img_size`` with bilinear interpolation.

    Args:
        split (str): ``'train'`` or ``'test'``.
        img_size (int): Output side length in pixels. Defaults to 32.

    Returns:
        tuple: ``images`` of shape (N, img_size, img_size, 3), uint8, and
        ``labels`` of shape (N,), int64.
    """
    if not isinstance(img_size, int) or img_size < 8:
        raise ValueError(f'img_size={img_size!r} must be an int >= 8.')
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    digits = load_digits()
    idx = digits_split_indices(split)
    images = torch.from_numpy(digits.images[idx] / 16.0).float()[:, None]
    if img_size != 8:
        images = F.interpolate(
            images, size=(img_size, img_size), mode='bilinear',
            align_corners=False)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    images = images.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy()
    return np.ascontiguousarray(images), digits.target[idx].astype(np.int64)


@DATASETS.register_module()
class DigitsDataset(BaseDataset):
    """UCI handwritten digits (1,797 images, 10 classes) from scikit-learn.

    The data ship inside the scikit-learn wheel, so this dataset needs no
    download and no files. Images are served as uint8 RGB arrays of
    ``img_size`` pixels through the normal mmpretrain pipeline (no
    ``LoadImageFromFile`` needed). The split is fixed: see
    :func:`digits_split_indices` (1,347 train / 450 test).

    Args:
        split (str): ``'train'`` or ``'test'``. Defaults to ``'train'``.
        img_size (int): Image side in pixels. Defaults to 32.
        pipeline (Sequence): Processing pipeline. Defaults to ().
        **kwargs: Other arguments of :class:`mmpretrain.datasets.BaseDataset`.
    """

    METAINFO = {'classes': tuple(str(i) for i in range(10))}

    def __init__(self,
                 split: str = 'train',
                 img_size: int = 32,
                 pipeline: Sequence = (),
                 ann_file: str = '',
                 metainfo: Optional[dict] = None,
                 **kwargs):
        if split not in ('train', 'test'):
            raise ValueError(
                f"DigitsDataset: split={split!r} is not valid; use 'train' "
                "or 'test'.")
        self.split = split
        self.img_size = img_size
        super().__init__(
            ann_file=ann_file,
            metainfo=metainfo,
            pipeline=pipeline,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        images, labels = load_digits_images(self.split, self.img_size)
        return [
            dict(img=img, gt_label=int(label), sample_idx=i)
            for i, (img, label) in enumerate(zip(images, labels))
        ]

    def extra_repr(self) -> List[str]:
        return [f'Split: \t{self.split}', f'Image size: \t{self.img_size}']
