import numpy as np
import pytest
import torch
from baseline_utils import check_contract, make_batch, seed_all
from mmpretrain.registry import BATCH_AUGMENTS

from mergemix_mm.models.batch_augments import FMix
from mergemix_mm.models.batch_augments.fmix import (binarise_mask,
                                                    low_frequency_image)


def test_contract_and_registry():
    aug = BATCH_AUGMENTS.build(dict(type='FMix', alpha=1.0))
    assert isinstance(aug, FMix)
    check_contract(aug, *make_batch())


@pytest.mark.parametrize('seed', range(5))
def test_mask_area_matches_lambda(seed):
    x, _ = make_batch(4, size=32)
    seed_all(seed)
    plan = FMix(alpha=1.0).build_mix(x)
    mask = plan['mask']
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    # one mask for the batch, its area within one pixel of the drawn lambda
    assert torch.equal(mask, mask[:1].expand_as(mask))
    assert abs(mask[0].mean().item() - plan['lam_draw']) <= 1 / 32**2 + 1e-7
    torch.testing.assert_close(plan['lam'], mask.flatten(1).mean(1))


def test_binarise_keeps_exact_count_of_highest_pixels():
    img = torch.rand(10, 10)
    for lam in (0.0, 0.13, 0.5, 0.995, 1.0):
        mask = binarise_mask(img, lam)
        assert mask.sum().item() in (np.floor(lam * 100), np.ceil(lam * 100))
        if 0 < mask.sum() < 100:
            assert img[mask == 1].min() > img[mask == 0].max()


def test_soft_edges_keep_the_mean():
    img = torch.rand(32, 32)
    mask = binarise_mask(img, 0.4, max_soft=0.1)
    inner = ((mask > 0) & (mask < 1)).sum().item()
    assert inner > 100  # a ramp of about 2 * 0.1 * 1024 pixels
    assert abs(mask.mean().item() - 0.4) <= 2 / 1024


def _boundary_fraction(mask: torch.Tensor) -> float:
    return ((mask[1:] != mask[:-1]).float().mean() +
            (mask[:, 1:] != mask[:, :-1]).float().mean()).item() / 2


def test_masks_are_low_frequency():
    """Larger decay powers give smoother masks (fewer boundary pixels); a
    white-noise mask (decay 0) is much rougher."""
    torch.manual_seed(0)
    rough = np.mean([
        _boundary_fraction(binarise_mask(low_frequency_image((64, 64), 0.),
                                         0.5)) for _ in range(10)
    ])
    smooth = np.mean([
        _boundary_fraction(binarise_mask(low_frequency_image((64, 64), 3.),
                                         0.5)) for _ in range(10)
    ])
    assert smooth < 0.25 * rough


def test_reformulate_shifts_lambda_up():
    x, _ = make_batch(2)
    seed_all(0)
    draws = [FMix(1.0, reformulate=True).build_mix(x)['lam_draw']
             for _ in range(300)]
    assert 0.6 < np.mean(draws) < 0.73  # Beta(2, 1) has mean 2/3


@pytest.mark.parametrize('kwargs, err', [
    (dict(alpha=0), ValueError),
    (dict(alpha=-1.0), ValueError),
    (dict(alpha='1'), TypeError),
    (dict(decay_power=0), ValueError),
    (dict(max_soft=0.6), ValueError),
    (dict(reformulate=1), TypeError),
])
def test_bad_hyper_parameters(kwargs, err):
    with pytest.raises(err, match=list(kwargs)[0]):
        FMix(**kwargs)


def test_softening_is_limited_by_the_smaller_area():
    """The ramp is at most 2 * min(max_soft, lam, 1 - lam) * n pixels, so a
    small lam keeps its mean under a large max_soft."""
    img = torch.rand(10, 10)
    mask = binarise_mask(img, 0.1, max_soft=0.5)
    assert (mask > 0).sum().item() <= 20
    assert mask.mean().item() == pytest.approx(0.1, abs=1e-6)


@pytest.mark.parametrize('decay_power', [1.0, 5.0])
def test_decay_power_reaches_the_spectrum(monkeypatch, decay_power):
    """The configured ``decay_power`` is the one the low-frequency image is
    drawn with (every other test uses the default 3)."""
    import mergemix_mm.models.batch_augments.fmix as fmix
    seen = []
    original = fmix.low_frequency_image

    def spy(size, power, *args, **kwargs):
        seen.append(power)
        return original(size, power, *args, **kwargs)

    monkeypatch.setattr(fmix, 'low_frequency_image', spy)
    x, _ = make_batch(2, size=32)
    seed_all(0)
    FMix(decay_power=decay_power).build_mix(x)
    assert seen == [decay_power]
