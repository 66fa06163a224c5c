import math

import numpy as np
import pytest
import torch
from baseline_utils import check_contract, make_batch, seed_all
from mmpretrain.registry import BATCH_AUGMENTS

from mergemix_mm.models.batch_augments import (SaliencyMix,
                                               spectral_residual_saliency)


def test_contract_and_registry():
    aug = BATCH_AUGMENTS.build(dict(type='SaliencyMix', alpha=0.2))
    assert isinstance(aug, SaliencyMix)
    check_contract(aug, *make_batch())


def _blob_images():
    """Textured background with one small bright square per image."""
    g = torch.Generator().manual_seed(0)
    x = 0.1 * torch.randn(3, 3, 64, 64, generator=g)
    spots = [(10, 12), (40, 50), (30, 20)]
    for i, (r, c) in enumerate(spots):
        x[i, :, r - 3:r + 3, c - 3:c + 3] += 3.0
    return x, spots


def test_spectral_residual_peaks_on_the_odd_object():
    x, spots = _blob_images()
    sal = spectral_residual_saliency(x)
    assert sal.shape == (3, 64, 64) and bool((sal >= 0).all())
    for i, (r, c) in enumerate(spots):
        peak = divmod(int(sal[i].argmax()), 64)
        assert abs(peak[0] - r) <= 5 and abs(peak[1] - c) <= 5
    # invariant to the affine intensity change of input normalisation
    sal2 = spectral_residual_saliency(2.5 * x - 1.0)
    assert torch.equal(sal.flatten(1).argmax(1), sal2.flatten(1).argmax(1))


class _StubSaliency(SaliencyMix):
    """Saliency = one hot pixel per image at a known place."""

    def __init__(self, peaks, **kwargs):
        super().__init__(**kwargs)
        self.peaks = peaks

    def saliency(self, images):
        sal = torch.zeros(images.shape[0], *images.shape[-2:])
        for i, img in enumerate(images):
            key = int(img[0, 0, 0].item())  # image id stored in a pixel
            sal[i, self.peaks[key][0], self.peaks[key][1]] = 1.0
        return sal


def test_box_is_centred_on_the_partners_saliency_peak():
    x = torch.zeros(4, 3, 64, 64)
    for i in range(4):
        x[i] = i
    peaks = {0: (20, 30), 1: (32, 32), 2: (25, 40), 3: (40, 22)}
    aug = _StubSaliency(peaks, alpha=1.0)
    unclipped = 0
    for seed in range(20):
        seed_all(seed)
        plan = aug.build_mix(x)
        cut_h, cut_w = plan['cut']
        for i, (y1, y2, x1, x2) in enumerate(plan['boxes']):
            j = int(plan['index'][i])
            cy, cx = peaks[j]  # the partner's peak, not the own one
            assert (y1, y2, x1, x2) == (max(cy - cut_h // 2, 0),
                                        min(cy + cut_h // 2, 64),
                                        max(cx - cut_w // 2, 0),
                                        min(cx + cut_w // 2, 64))
            if y1 > 0 and x1 > 0 and y2 < 64 and x2 < 64:
                unclipped += 1
                assert (y1 + y2) // 2 == cy and (x1 + x2) // 2 == cx
            assert plan['lam'][i].item() == pytest.approx(
                1 - (y2 - y1) * (x2 - x1) / 64**2)
    assert unclipped > 10
    mixed = aug.apply_mix(x, x[plan['index']], plan)
    y1, y2, x1, x2 = plan['boxes'][0]
    assert bool((mixed[0, :, y1:y2, x1:x2] == int(plan['index'][0])).all())
    assert bool((mixed[0, :, :y1] == 0).all())


def test_reference_mode_uses_one_box_for_the_batch():
    x = torch.zeros(4, 3, 64, 64)
    for i in range(4):
        x[i] = i
    peaks = {0: (20, 30), 1: (32, 32), 2: (25, 40), 3: (40, 22)}
    seed_all(0)
    plan = _StubSaliency(peaks, per_sample=False).build_mix(x)
    assert len(set(plan['boxes'])) == 1
    j = int(plan['index'][0])
    y1, y2, x1, x2 = plan['boxes'][0]
    assert ((y1 + y2) // 2, (x1 + x2) // 2) == peaks[j]


@pytest.mark.parametrize('kwargs, err', [
    (dict(alpha=0), ValueError),
    (dict(per_sample='yes'), TypeError),
    (dict(work_size=4), ValueError),
    (dict(blur_sigma=-1), ValueError),
])
def test_bad_hyper_parameters(kwargs, err):
    with pytest.raises(err, match=list(kwargs)[0]):
        SaliencyMix(**kwargs)


@pytest.mark.parametrize('seed', [0, 1, 4])
def test_box_side_is_cutmix_law(seed):
    """The unclipped box has sides ``int(64 * sqrt(1 - lam))`` for the drawn
    lambda (the test above reads the size back from the plan)."""
    x, _ = make_batch(4, size=64)
    seed_all(seed)
    lam = np.random.beta(1.0, 1.0)
    seed_all(seed)
    plan = SaliencyMix(alpha=1.0).build_mix(x)
    side = int(64 * math.sqrt(1 - lam))
    assert tuple(plan['cut']) == (side, side)
