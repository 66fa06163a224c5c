import pytest
import torch
from baseline_utils import build_bound, check_contract, make_batch, seed_all

from mergemix_mm.models.batch_augments import TdAttenMix
from mergemix_mm.models.batch_augments.attention_utils import \
    normalize_map
from mergemix_mm.models.batch_augments.smmix import region_swap_plan
from mergemix_mm.models.batch_augments.tdattenmix import (
    label_relevance, region_attention_lam, top_down_map)


def test_contract_with_bound_model():
    _, aug = build_bound(dict(type='TdAttenMix'))
    check_contract(aug, *make_batch())


def test_top_down_map_thresholds_like_the_gaze_map():
    rel = torch.tensor([[[0.0, 1.0], [2.0, 10.0]]])
    td = top_down_map(rel, high=0.7)
    # threshold = 0.7 * 10 + 0.3 * 0 = 7: only the strongest cell survives
    torch.testing.assert_close(td, torch.tensor([[[0.0, 0.0], [0.0, 3.0]]]))


def test_label_relevance_is_gradient_times_input_of_the_label():
    model, _ = build_bound(dict(type='TdAttenMix'))
    x, _ = make_batch(2)
    score = torch.eye(10)[[3, 7]]
    top, bottom = label_relevance(model, x, score)
    assert top.shape == (2, 8, 8) and bottom.shape == (2, 8, 8)
    # reference: d(score . logits)/dx * x, positive part, summed per patch
    model.eval()
    xg = x.clone().requires_grad_(True)
    (model(xg, mode='tensor') * score).sum().backward()
    model.zero_grad(set_to_none=True)
    ref = (xg.grad * x).sum(1).clamp_min(0).reshape(2, 8, 4, 8, 4).sum((2, 4))
    torch.testing.assert_close(top, ref, rtol=1e-4, atol=1e-6)
    other, _ = label_relevance(model, x, torch.eye(10)[[0, 1]])
    assert not torch.allclose(top, other)  # depends on the label


def test_label_relevance_writes_no_parameter_gradient():
    model, _ = build_bound(dict(type='TdAttenMix'))
    label_relevance(model, make_batch(2)[0], torch.eye(10)[:2])
    assert all(p.grad is None for p in model.parameters())
    assert model.training  # eval mode is restored


def test_label_mixes_area_and_balanced_attention():
    sal = torch.full((2, 4, 4), 1 / 16)
    sal[0, 0, 0] = 0.0
    sal[1, 3, 3] = 0.5
    index = torch.tensor([1, 0])
    plan = region_swap_plan(sal, index, 1, (8, 8), (32, 32))
    lam_attn = region_attention_lam(sal, plan)
    # sample 0 loses its empty (0, 0) cell and receives the partner's 0.5
    own0 = sal[0].sum() - sal[0, 0, 0]
    assert lam_attn[0].item() == pytest.approx((own0 / (own0 + 0.5)).item())
    aug = TdAttenMix(ratio=0.25)
    lam = aug.ratio * plan['lam'] + (1 - aug.ratio) * lam_attn
    assert not torch.allclose(lam, plan['lam'])


def test_plan_uses_labels_and_the_classifier_weight():
    model, aug = build_bound(dict(type='TdAttenMix', top_down_weight=1.0))
    x, y = make_batch(4)
    y = y.float()
    seed_all(0)
    plan_a = aug.build_mix(x, y)
    seed_all(0)
    plan_b = aug.build_mix(x, y.roll(1, dims=1))
    assert not torch.allclose(plan_a['saliency'], plan_b['saliency'])
    torch.testing.assert_close(
        plan_a['lam'], aug.ratio * plan_a['lam_area'] +
        (1 - aug.ratio) * plan_a['lam_attn'])
    torch.testing.assert_close(plan_a['saliency'].flatten(1).sum(1),
                               torch.ones(4))


def test_top_down_needs_labels_but_bottom_up_does_not():
    _, aug = build_bound(dict(type='TdAttenMix'))
    x, _ = make_batch(2)
    with pytest.raises(ValueError, match='needs the labels'):
        aug.build_mix(x)
    _, aug = build_bound(dict(type='TdAttenMix', top_down_weight=0.0))
    assert aug.build_mix(x)['lam'].shape == (2, )


def test_class_count_mismatch_is_a_clear_error():
    _, aug = build_bound(dict(type='TdAttenMix'))
    x, _ = make_batch(2)
    with pytest.raises(ValueError, match='12 classes'):
        aug.build_mix(x, torch.eye(12)[:2])


@pytest.mark.parametrize('kwargs, err', [
    (dict(top_down_weight=1.2), ValueError),
    (dict(ratio=-1), ValueError),
    (dict(min_side_ratio=0), ValueError),
])
def test_bad_hyper_parameters(kwargs, err):
    with pytest.raises(err, match=list(kwargs)[0]):
        TdAttenMix(**kwargs)


def test_build_mix_weights_area_by_ratio():
    _, aug = build_bound(dict(type='TdAttenMix', ratio=0.2))
    x, y = make_batch(4)
    seed_all(0)
    plan = aug.build_mix(x, y.float())
    assert not torch.allclose(plan['lam_area'], plan['lam_attn'])
    torch.testing.assert_close(
        plan['lam'], 0.2 * plan['lam_area'] + 0.8 * plan['lam_attn'])


def test_normalize_map_drops_negative_cells():
    sal = torch.tensor([[[-1.0, 1.0], [1.0, 2.0]]])
    torch.testing.assert_close(
        normalize_map(sal), torch.tensor([[[0.0, 0.25], [0.25, 0.5]]]))
