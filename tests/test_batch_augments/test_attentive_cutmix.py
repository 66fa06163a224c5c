import numpy as np
import pytest
import torch
from baseline_utils import build_bound, check_contract, make_batch, seed_all

from mergemix_mm.models.batch_augments import AttentiveCutMix


def test_contract_with_bound_model():
    _, aug = build_bound(dict(type='AttentiveCutMix'))
    check_contract(aug, *make_batch())


class _Stub(AttentiveCutMix):

    def saliency(self, inputs):
        # image i is bright in cells (i, 0..7) of a 8x8 grid: row i
        sal = torch.rand(inputs.shape[0], 8, 8) * 0.1
        for i, img in enumerate(inputs):
            row = int(img[0, 0, 0].item())
            sal[i, row] += 1.0
        return sal


def test_partners_top_k_cells_are_pasted_in_place():
    x = torch.zeros(4, 3, 32, 32)
    for i in range(4):
        x[i] = i
    aug = _Stub(top_k=8)
    seed_all(0)
    plan = aug.build_mix(x)
    mixed = aug.apply_mix(x, x[plan['index']], plan)
    for i in range(4):
        j = int(plan['index'][i])
        cells = plan['cells'][i]
        assert int(cells.sum()) == 8 and bool(cells[j].all())
        # the partner's row of cells (4 px each) shows the partner
        assert bool((mixed[i, :, 4 * j:4 * j + 4] == j).all())
        rest = torch.ones(32, dtype=torch.bool)
        rest[4 * j:4 * j + 4] = False
        assert bool((mixed[i][:, rest] == i).all())
    torch.testing.assert_close(plan['lam'], torch.full((4, ), 1 - 8 / 64))


def test_top_k_from_lambda_when_unset():
    aug = _Stub(alpha=2.0)
    x = torch.zeros(3, 3, 32, 32)
    seed_all(0)
    ks = {aug.build_mix(x)['k'] for _ in range(50)}
    assert len(ks) > 5 and min(ks) >= 1 and max(ks) <= 64


def test_grid_size_pools_to_the_papers_grid():
    _, aug = build_bound(dict(type='AttentiveCutMix', top_k=1, grid_size=2))
    x, y = make_batch(3)
    seed_all(0)
    plan = aug.build_mix(x)
    assert plan['cells'].shape == (3, 2, 2)
    torch.testing.assert_close(plan['lam'], torch.full((3, ), 0.75))


def test_configured_cnn_extractor_needs_no_binding():
    aug = AttentiveCutMix(
        top_k=2,
        extractor=dict(type='ResNet', depth=18, out_indices=(2, )))
    x, y = make_batch(3, size=64)
    sal = aug.saliency(x)
    assert sal.shape == (3, 4, 4)  # stride 16 at 64 px
    mixed, scores = aug(x, y)
    torch.testing.assert_close(scores.max(1).values, torch.full((3, ),
                                                                1 - 2 / 16))


def test_errors():
    x, y = make_batch(2)
    with pytest.raises(RuntimeError, match='not bound'):
        AttentiveCutMix()(x, y)
    _, aug = build_bound(dict(type='AttentiveCutMix', top_k=100))
    with pytest.raises(ValueError, match='top_k=100 exceeds'):
        aug(x, y)
    _, aug = build_bound(dict(type='AttentiveCutMix', grid_size=9))
    with pytest.raises(ValueError, match='grid_size=9'):
        aug(x, y)


@pytest.mark.parametrize('kwargs, err', [
    (dict(alpha=0), ValueError),
    (dict(top_k=0), ValueError),
    (dict(saliency='gradcam'), ValueError),
    (dict(grid_size=0), ValueError),
    (dict(extractor='resnet50'), TypeError),
])
def test_bad_hyper_parameters(kwargs, err):
    with pytest.raises(err, match=list(kwargs)[0]):
        AttentiveCutMix(**kwargs)


@pytest.mark.parametrize('seed', range(4))
def test_top_k_is_int_of_lambda_cells(seed):
    aug = _Stub(alpha=2.0)
    x = torch.zeros(3, 3, 32, 32)
    seed_all(seed)
    lam = np.random.beta(2.0, 2.0)
    seed_all(seed)
    assert aug.build_mix(x)['k'] == min(max(1, int(64 * lam)), 64)
