"""The scikit-learn digits: a fixed 1,347 / 450 split of the 1,797 images
with labels matching ``load_digits().target``."""
import numpy as np
import pytest
from mmpretrain.registry import DATASETS

import mergemix_mm  # noqa: F401
from mergemix_mm.datasets.digits import (digits_split_indices,
                                         load_digits_images)


def test_split_is_a_fixed_partition():
    train = digits_split_indices('train')
    test = digits_split_indices('test')
    assert len(train) == 1347 and len(test) == 450
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(1797))
    perm = np.random.RandomState(0).permutation(1797)
    assert train.tolist() == perm[:1347].tolist()
    assert test.tolist() == perm[1347:].tolist()
    with pytest.raises(ValueError, match='split'):
        digits_split_indices('val')


@pytest.mark.parametrize('split', ['train', 'test'])
def test_images_and_labels_follow_the_split(split):
    from sklearn.datasets import load_digits
    digits = load_digits()
    idx = digits_split_indices(split)
    images, labels = load_digits_images(split, img_size=8)
    assert images.shape == (len(idx), 8, 8, 3) and images.dtype == np.uint8
    assert labels.tolist() == digits.target[idx].tolist()
    expected = np.round(digits.images[idx] / 16.0 * 255).astype(np.uint8)
    assert np.array_equal(images[..., 0], expected)
    assert np.array_equal(images[..., 0], images[..., 2])


def test_dataset_serves_the_split():
    ds = DATASETS.build(dict(type='DigitsDataset', split='test', img_size=16))
    _, labels = load_digits_images('test', img_size=16)
    assert len(ds) == 450
    assert [ds.get_data_info(i)['gt_label'] for i in range(len(ds))] == \
        labels.tolist()
    assert ds.get_data_info(0)['img'].shape == (16, 16, 3)
