import pytest
import torch
from baseline_utils import check_contract, make_batch, seed_all
from mmpretrain.registry import BATCH_AUGMENTS

from mergemix_mm.models.batch_augments import SmoothMix


def test_contract_and_registry():
    aug = BATCH_AUGMENTS.build(dict(type='SmoothMix'))
    assert isinstance(aug, SmoothMix)
    check_contract(aug, *make_batch())


@pytest.mark.parametrize('seed', range(4))
def test_partner_weight_is_a_gaussian_blob(seed):
    x, _ = make_batch(3, size=40)
    seed_all(seed)
    plan = SmoothMix().build_mix(x)
    partner = 1 - plan['mask'][0, 0]
    cy, cx = (int(c) for c in plan['center'])
    sy, sx = plan['sigma']
    assert 0.25 * 40 <= sy <= 0.5 * 40
    # peak 1 at the centre, smooth (no hard edge), radially decreasing
    assert partner[cy, cx].item() == pytest.approx(1.0)
    assert partner.min() > 0 and partner.max() <= 1
    ys, xs = torch.meshgrid(torch.arange(40.), torch.arange(40.),
                            indexing='ij')
    expected = torch.exp(-((ys - cy)**2 / (2 * sy**2) + (xs - cx)**2 /
                           (2 * sx**2)))
    torch.testing.assert_close(partner, expected)
    assert (partner[1:] - partner[:-1]).abs().max() < 0.2


def test_label_is_the_own_area_not_the_partners():
    """OpenMixup weights the own label with the partner's area; the own
    image's visible weight must be used."""
    x, _ = make_batch(2, size=32)
    seed_all(3)
    plan = SmoothMix().build_mix(x)
    own = plan['mask'][0, 0].mean()
    torch.testing.assert_close(plan['lam'], own.expand(2))
    assert abs(plan['lam'][0] - (1 - own)) > 1e-3


def test_openmixup_compat_labels_with_the_partners_area():
    """compat='openmixup' reproduces OpenMixup's label (own label weight =
    partner area); the images are mixed the same way."""
    x, _ = make_batch(2, size=32)
    seed_all(3)
    plan = SmoothMix().build_mix(x)
    seed_all(3)
    compat = SmoothMix(compat='openmixup').build_mix(x)
    torch.testing.assert_close(compat['mask'], plan['mask'])
    assert torch.equal(compat['index'], plan['index'])
    torch.testing.assert_close(compat['lam'], 1 - plan['lam'])
    with pytest.raises(ValueError, match="compat='official'"):
        SmoothMix(compat='official')


@pytest.mark.parametrize('value, err', [((0, 0.5), ValueError),
                                        ((0.5, 0.25), ValueError),
                                        ('wide', TypeError)])
def test_bad_hyper_parameters(value, err):
    with pytest.raises(err, match='sigma_range'):
        SmoothMix(sigma_range=value)
