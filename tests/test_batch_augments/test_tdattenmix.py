import copy

import pytest
import torch
from baseline_utils import build_bound, check_contract, make_batch, seed_all

from mergemix_mm.models.batch_augments import TdAttenMix
from mergemix_mm.models.batch_augments.smmix import region_swap_plan
from mergemix_mm.models.batch_augments.tdattenmix import (
    region_attention_lam, top_down_map)


def test_contract_with_bound_model():
    _, aug = build_bound(dict(type='TdAttenMix'))
    check_contract(aug, *make_batch())


def test_top_down_map_follows_the_label():
    tokens = torch.zeros(2, 4, 4, 3)
    tokens[:, :2, :, 0] = 1.0  # top half looks like class 0
    tokens[:, 2:, :, 1] = 1.0  # bottom half looks like class 1
    weight = torch.eye(3)
    td = top_down_map(tokens, weight[[0, 1]])
    assert bool((td[0, :2] > 0).all()) and bool((td[0, 2:] == 0).all())
    assert bool((td[1, 2:] > 0).all()) and bool((td[1, :2] == 0).all())


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


def test_head_with_hidden_layer_is_a_clear_error():
    model, aug = build_bound(dict(type='TdAttenMix'))
    model2 = copy.deepcopy(model)
    from mmpretrain.registry import MODELS
    model2.head = MODELS.build(dict(type='VisionTransformerClsHead',
                                    num_classes=10, in_channels=32,
                                    hidden_dim=16))
    aug.bind(model2)
    x, y = make_batch(2)
    with pytest.raises(ValueError, match='top_down_weight=0.5'):
        aug(x, y)


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
