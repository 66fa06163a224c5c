import numpy as np
import pytest
import torch
import torch.nn.functional as F
from baseline_utils import check_contract, make_batch, seed_all
from mmpretrain.registry import BATCH_AUGMENTS

from mergemix_mm.models.batch_augments import ResizeMixTau


def test_contract_and_registry():
    aug = BATCH_AUGMENTS.build(dict(type='ResizeMixTau', use_alpha=True))
    assert isinstance(aug, ResizeMixTau)
    check_contract(aug, *make_batch())


@pytest.mark.parametrize('mode', ['bilinear', 'nearest'])
def test_whole_partner_is_resized_into_the_box(mode):
    x, _ = make_batch(4, size=48)
    aug = ResizeMixTau(interpolation=mode)
    seed_all(2)
    plan = aug.build_mix(x)
    y1, y2, x1, x2 = plan['box']
    assert y2 > y1 and x2 > x1
    mixed = aug.apply_mix(x, x[plan['index']], plan)
    kwargs = {} if mode == 'nearest' else dict(align_corners=False)
    expected = F.interpolate(x[plan['index']], size=(y2 - y1, x2 - x1),
                             mode=mode, **kwargs)
    torch.testing.assert_close(mixed[..., y1:y2, x1:x2], expected)
    outside = plan['mask'].bool().expand_as(x)
    torch.testing.assert_close(mixed[outside], x[outside])
    area = (y2 - y1) * (x2 - x1) / 48**2
    torch.testing.assert_close(plan['lam'], torch.full((4, ), 1 - area))
    assert plan['partner_area_scale'] == pytest.approx(area)


def test_tau_law_pastes_small_boxes():
    """The paper's tau is a side ratio in [0.1, 0.8]: the pasted area is at
    most 0.64 (mmpretrain's law pastes up to 0.9)."""
    x, _ = make_batch(2, size=100)
    seed_all(0)
    aug = ResizeMixTau(scope=(0.1, 0.8))
    taus, areas = [], []
    for _ in range(300):
        plan = aug.build_mix(x)
        taus.append(plan['tau'])
        areas.append(1 - plan['lam'][0].item())
        y1, y2, x1, x2 = plan['box']
        assert y2 - y1 <= int(100 * plan['tau'])
    assert min(taus) >= 0.1 and max(taus) <= 0.8
    assert max(areas) <= 0.64 + 1e-6
    assert np.mean(taus) == pytest.approx(0.45, abs=0.05)


@pytest.mark.parametrize('kwargs, err', [
    (dict(scope=(0.0, 0.5)), ValueError),
    (dict(scope=(0.9, 0.2)), ValueError),
    (dict(scope=(0.2, 1.2)), ValueError),
    (dict(scope=0.5), TypeError),
    (dict(alpha=-2), ValueError),
    (dict(interpolation='lanczos'), ValueError),
    (dict(use_alpha=None), TypeError),
])
def test_bad_hyper_parameters(kwargs, err):
    with pytest.raises(err, match=list(kwargs)[0]):
        ResizeMixTau(**kwargs)


def test_box_side_is_int_h_tau(monkeypatch):
    """An unclipped box (centre drawn at the image centre) has the side
    ``int(H * tau)`` (rounded down to even by the half-size rule); the test
    above checks only an upper bound."""
    from mergemix_mm.models.batch_augments import box_utils
    monkeypatch.setattr(box_utils.np.random, 'randint', lambda n: n // 2)
    x, _ = make_batch(2, size=100)
    monkeypatch.setattr(np.random, 'uniform', lambda lo, hi: 0.57)
    plan = ResizeMixTau(scope=(0.1, 0.8)).build_mix(x)
    y1, y2, x1, x2 = plan['box']
    assert plan['tau'] == 0.57
    assert (y2 - y1, x2 - x1) == (56, 56)  # int(100 * 0.57) = 57 -> 2 * 28


@pytest.mark.parametrize('seed', [0, 2, 4])
def test_use_alpha_draws_tau_from_beta(seed):
    """``use_alpha=True``: tau is the Beta(alpha, alpha) draw when it falls
    inside ``scope`` (else a uniform redraw)."""
    x, _ = make_batch(2, size=32)
    np.random.seed(seed)
    ref = float(np.random.beta(2.0, 2.0))
    assert 0.1 <= ref <= 0.8  # these seeds draw inside the scope
    np.random.seed(seed)
    plan = ResizeMixTau(scope=(0.1, 0.8), use_alpha=True,
                        alpha=2.0).build_mix(x)
    assert plan['tau'] == ref
