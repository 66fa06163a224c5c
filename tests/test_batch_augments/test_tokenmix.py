import numpy as np
import pytest
import torch
from baseline_utils import (TINY_VIT, build_bound, check_contract, make_batch,
                            seed_all)

from mergemix_mm.models.batch_augments import TokenMix
from mergemix_mm.models.batch_augments.tokenmix import (block_token_mask,
                                                        random_token_mask)


def test_contract_with_bound_model():
    _, aug = build_bound(dict(type='TokenMix'))
    check_contract(aug, *make_batch())


def _edges(mask):
    rows = (mask[1:] != mask[:-1]).sum()
    cols = (mask[:, 1:] != mask[:, :-1]).sum()
    return int(rows + cols)


def test_block_masks_are_blocky_and_hit_the_count():
    seed_all(0)
    block_edges, random_edges = [], []
    for _ in range(30):
        blk = block_token_mask((14, 14), 112)
        rnd = random_token_mask((14, 14), 112)
        assert rnd.sum() == 112
        assert 100 <= blk.sum() <= 112  # never above the target
        block_edges.append(_edges(blk))
        random_edges.append(_edges(rnd))
    assert np.mean(block_edges) < 0.6 * np.mean(random_edges)


def test_token_count_follows_ratio_plus_one_row():
    _, aug = build_bound(dict(type='TokenMix', mask_type='random'))
    assert aug.num_masked((8, 8)) == 32 + 8
    _, aug = build_bound(dict(type='TokenMix', mask_type='random',
                              minimum_tokens=0, mask_ratio=0.25))
    x, _ = make_batch(3)
    seed_all(0)
    plan = aug.build_mix(x)
    assert int(plan['token_mask'].sum()) == 16
    torch.testing.assert_close(plan['lam_area'], torch.full((3, ), 0.75))
    # token-aligned pixel mask
    blocks = plan['mask'][:, 0].reshape(3, 8, 4, 8, 4)
    assert bool((blocks.amax((2, 4)) == blocks.amin((2, 4))).all())


def test_label_is_content_based():
    class Stub(TokenMix):
        def activation_map(self, inputs):
            act = torch.zeros(inputs.shape[0], 8, 8)
            act[:, 0, 0] = 1.0  # all activation in the top-left token
            return act

    model, _ = build_bound(dict(type='TokenMix'))
    aug = Stub(mask_type='random')
    aug.bind(model)
    x, _ = make_batch(4)
    seed_all(0)
    plan = aug.build_mix(x)
    covered = bool(plan['token_mask'][0, 0])
    # own object hidden -> label goes to the partner, and vice versa
    expected = 0.0 if covered else 1.0
    torch.testing.assert_close(plan['lam'], torch.full((4, ), expected))


def test_teacher_backbone_needs_no_binding():
    teacher = dict(TINY_VIT)
    aug = TokenMix(teacher=teacher)
    x, y = make_batch(3)
    mixed, scores = aug(x, y)
    torch.testing.assert_close(scores.sum(1), torch.ones(3))
    assert aug.teacher.training is False
    assert all(not p.requires_grad for p in aug.teacher.parameters())


def test_unbound_without_teacher_is_a_clear_error():
    with pytest.raises(RuntimeError, match='not bound'):
        TokenMix()(*make_batch(2))


@pytest.mark.parametrize('kwargs, err', [
    (dict(mask_type='grid'), ValueError),
    (dict(mask_ratio=1.5), ValueError),
    (dict(alpha=0), ValueError),
    (dict(minimum_tokens=-1), ValueError),
    (dict(min_aspect=0), ValueError),
    (dict(label='soft'), ValueError),
    (dict(teacher='vit'), TypeError),
])
def test_bad_hyper_parameters(kwargs, err):
    with pytest.raises(err, match=list(kwargs)[0]):
        TokenMix(**kwargs)


def test_partner_score_uses_the_partner_activation_map():
    class Stub(TokenMix):
        def activation_map(self, inputs):
            g = torch.Generator().manual_seed(3)
            act = torch.rand(inputs.shape[0], 8, 8, generator=g)
            return act / act.flatten(1).sum(1)[:, None, None]

    model, _ = build_bound(dict(type='TokenMix'))
    aug = Stub(mask_type='random')
    aug.bind(model)
    x, _ = make_batch(4)
    seed_all(0)
    plan = aug.build_mix(x)
    act, masked = plan['activation'], plan['token_mask']
    index = plan['index']
    for i in range(4):
        s_own = act[i][~masked].sum()
        s_partner = act[index[i]][masked].sum()
        assert plan['lam'][i].item() == pytest.approx(
            (s_own / (s_own + s_partner)).item(), abs=1e-6)


def test_token_count_is_capped_at_the_grid():
    _, aug = build_bound(dict(type='TokenMix', mask_ratio=1.0))
    assert aug.num_masked((8, 8)) == 64


@pytest.mark.parametrize('seed', range(3))
def test_alpha_draws_the_ratio_as_one_minus_beta(seed):
    _, aug = build_bound(dict(type='TokenMix', alpha=0.5, minimum_tokens=0))
    seed_all(seed)
    beta = np.random.beta(0.5, 0.5)
    seed_all(seed)
    assert aug.num_masked((8, 8)) == int((1 - beta) * 64)
