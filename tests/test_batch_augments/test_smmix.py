import pytest
import torch
from baseline_utils import build_bound, check_contract, make_batch, seed_all

from mergemix_mm.models.batch_augments import SMMix
from mergemix_mm.models.batch_augments.smmix import (region_swap_plan,
                                                     window_sums)


def test_contract_with_bound_model():
    _, aug = build_bound(dict(type='SMMix'))
    check_contract(aug, *make_batch())


def test_window_sums():
    sal = torch.arange(16.).reshape(1, 4, 4)
    sums = window_sums(sal, 2)
    assert sums.shape == (1, 3, 3)
    assert sums[0, 0, 0].item() == 0 + 1 + 4 + 5
    assert sums[0, 2, 2].item() == 10 + 11 + 14 + 15


def _hot_cold(h, spots_hot, spots_cold):
    sal = torch.full((len(spots_hot), h, h), 0.5)
    for i, ((hr, hc), (cr, cc)) in enumerate(zip(spots_hot, spots_cold)):
        sal[i, hr:hr + 2, hc:hc + 2] = 5.0
        sal[i, cr:cr + 2, cc:cc + 2] = 0.0
    return sal


def test_partner_max_window_replaces_own_min_window():
    hot = [(0, 0), (5, 5), (2, 4)]
    cold = [(6, 6), (0, 3), (4, 0)]
    sal = _hot_cold(8, hot, cold)
    index = torch.tensor([1, 2, 0])
    plan = region_swap_plan(sal, index, 2, (4, 4), (32, 32))
    for i in range(3):
        assert tuple(plan['dst'][i].tolist()) == cold[i]
        assert tuple(plan['src'][i].tolist()) == hot[int(index[i])]
    torch.testing.assert_close(plan['lam'], torch.full((3, ), 1 - 4 / 64))
    x, _ = make_batch(3)
    mixed = SMMix().apply_mix(x, x[index], plan)
    for i in range(3):
        (dr, dc), (sr, sc) = cold[i], hot[int(index[i])]
        torch.testing.assert_close(
            mixed[i, :, 4 * dr:4 * dr + 8, 4 * dc:4 * dc + 8],
            x[int(index[i]), :, 4 * sr:4 * sr + 8, 4 * sc:4 * sc + 8])
        keep = plan['mask'][i, 0].bool()
        torch.testing.assert_close(mixed[i][:, keep], x[i][:, keep])
        assert int((~keep).sum()) == 64


def test_side_is_drawn_in_the_configured_range():
    _, aug = build_bound(dict(type='SMMix', min_side_ratio=0.25,
                              max_side_ratio=0.5))
    seed_all(0)
    sides = {aug.draw_side((8, 8)) for _ in range(100)}
    assert sides == {2, 3, 4}


def test_saliency_comes_from_the_bound_model_attention():
    model, aug = build_bound(dict(type='SMMix'))
    x, _ = make_batch(3)
    seed_all(0)
    plan = aug.build_mix(x)
    sal = plan['saliency']
    assert sal.shape == (3, 8, 8)
    # CLS attention over patches of a softmax row: positive, sums to <= 1
    assert bool((sal > 0).all()) and bool((sal.flatten(1).sum(1) <= 1).all())
    assert model.training  # the eval-mode pass restores the mode


def test_tiny_ratio_for_the_grid_is_a_clear_error():
    _, aug = build_bound(dict(type='SMMix', min_side_ratio=0.1,
                              max_side_ratio=0.2))
    x, y = make_batch(2)
    with pytest.raises(ValueError, match='min_side_ratio=0.1'):
        aug(x, y)


@pytest.mark.parametrize('kind', ['SMMix', 'TdAttenMix'])
def test_the_suggested_min_side_ratio_works(kind):
    """On a 3x3 patch grid (12 px images, patch 4) a too small ratio is
    refused, and the smallest ratio the message suggests (rounded up, not
    to the nearest: 0.334, not 0.333) draws squares."""
    import re
    x, y = make_batch(4, size=12)
    _, aug = build_bound(dict(type=kind, min_side_ratio=0.25))
    with pytest.raises(ValueError, match='at least') as err:
        aug(x, y)
    suggested = float(re.search(r'at least ([0-9.]+)\.$',
                                str(err.value)).group(1))
    assert suggested == 0.334
    _, aug = build_bound(dict(type=kind, min_side_ratio=suggested))
    mixed, _ = aug(x, y)
    assert not torch.equal(mixed, x)


def test_unbound_call_is_a_clear_error():
    x, y = make_batch(2)
    with pytest.raises(RuntimeError, match='not bound'):
        SMMix()(x, y)


@pytest.mark.parametrize('kwargs, err', [
    (dict(min_side_ratio=0), ValueError),
    (dict(min_side_ratio=0.6, max_side_ratio=0.5), ValueError),
    (dict(max_side_ratio=1.5), ValueError),
    (dict(attn_layer='last'), TypeError),
])
def test_bad_hyper_parameters(kwargs, err):
    with pytest.raises(err, match=list(kwargs)[-1]):
        SMMix(**kwargs)
