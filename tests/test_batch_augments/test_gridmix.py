import math

import numpy as np
import pytest
import torch
from baseline_utils import check_contract, make_batch, seed_all
from mmpretrain.registry import BATCH_AUGMENTS

from mergemix_mm.models.batch_augments import GridMix
from mergemix_mm.models.batch_augments.base import derangement


def test_contract_and_registry():
    aug = BATCH_AUGMENTS.build(dict(type='GridMix'))
    assert isinstance(aug, GridMix)
    check_contract(aug, *make_batch())


def _runs(line: torch.Tensor):
    """(start, length) of the runs of True in a 1-D bool tensor."""
    runs, start = [], None
    for i, v in enumerate(line.tolist() + [False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            runs.append((start, i - start))
            start = None
    return runs


@pytest.mark.parametrize('seed', range(6))
def test_holes_form_a_regular_grid(seed):
    x, _ = make_batch(3, size=64)
    seed_all(seed)
    plan = GridMix(alpha=1.0, n_holes=(2, 6)).build_mix(x)
    holes = plan['mask'][0, 0] == 0
    g = plan['grid']
    (cell_h, cell_w), (hole_h, hole_w) = g['cell'], g['hole']
    rows = holes.any(1).nonzero().flatten()
    cols = holes.any(0).nonzero().flatten()
    # every row that crosses holes shows the same pattern (a grid, not blobs)
    pattern = holes[rows[0]]
    assert all(torch.equal(holes[r], pattern) for r in rows)
    col_pattern = holes[:, cols[0]]
    assert all(torch.equal(holes[:, c], col_pattern) for c in cols)
    # runs start on a regular lattice with the cell period; full runs have
    # the hole size (only the last one may be cut by the crop)
    for runs, period, size in ((_runs(pattern), cell_w, hole_w),
                               (_runs(col_pattern), cell_h, hole_h)):
        starts = [s for s, _ in runs]
        assert len(runs) >= 1
        assert all(b - a == period for a, b in zip(starts, starts[1:]))
        assert all(length == size for _, length in runs[:-1])
        assert runs[-1][1] <= size
    # label = own visible area, the same for every sample (one grid/batch)
    torch.testing.assert_close(plan['lam'],
                               torch.full((3, ), 1 - holes.float().mean()))


def test_hole_size_follows_lambda():
    """sqrt(1 - lam) of each cell side is a hole: small lam, big holes."""
    x, _ = make_batch(2, size=64)
    seed_all(0)
    lams = []
    aug = GridMix(alpha=1.0, n_holes=4, cut_area_ratio=1.0,
                  cut_aspect_ratio=1.0)
    for _ in range(30):
        plan = aug.build_mix(x)
        cell, hole = plan['grid']['cell'], plan['grid']['hole']
        lams.append((plan['lam'][0].item(), hole[1] / cell[1]))
    lams.sort()
    assert lams[0][1] >= lams[-1][1]


@pytest.mark.parametrize('kwargs, err', [
    (dict(alpha=0.0), ValueError),
    (dict(n_holes=0), ValueError),
    (dict(n_holes=(5, 2)), ValueError),
    (dict(n_holes=2.5), TypeError),
    (dict(cut_area_ratio=1.5), ValueError),
    (dict(cut_aspect_ratio=(0, 1)), ValueError),
    (dict(hole_aspect_ratio=(1, 2, 3)), ValueError),
])
def test_bad_hyper_parameters(kwargs, err):
    with pytest.raises(err, match=list(kwargs)[0]):
        GridMix(**kwargs)


def test_too_many_holes_for_the_image_is_an_error():
    x, y = make_batch(2, size=32)
    with pytest.raises(ValueError, match=r'n_holes=\(40, 40\) is too many'):
        GridMix(n_holes=40)(x, y)


@pytest.mark.parametrize('alpha, seed', [(1.0, 0), (1.0, 1), (1.0, 2),
                                         (0.02, 2), (0.02, 5), (0.02, 7)])
def test_grid_geometry_follows_the_laws(alpha, seed):
    """cell_h = cell_w x hole_aspect, hole side = int(cell sqrt(1 - lam))
    clipped to [1, cell - 1] (alpha=0.02 draws lam = 1 at seed 2 and
    lam < 1e-30 at seeds 5, 7)."""
    x, _ = make_batch(2, size=64)
    seed_all(seed)
    lam = np.random.beta(alpha, alpha)
    seed_all(seed)
    plan = GridMix(alpha=alpha, n_holes=4, hole_aspect_ratio=0.5,
                   cut_area_ratio=1.0, cut_aspect_ratio=1.0).build_mix(x)
    (cell_h, cell_w), (hole_h, hole_w) = plan['grid']['cell'], \
        plan['grid']['hole']
    # the whole 64 px image is the crop: n_holes=4 cells of 16 px per row
    assert tuple(plan['grid']['crop'][2:]) == (64, 64)
    assert cell_w == 16
    assert cell_h == max(int(cell_w * 0.5), 2)
    ratio = math.sqrt(1 - lam)
    assert hole_w == min(max(int(cell_w * ratio), 1), cell_w - 1)
    assert hole_h == min(max(int(cell_h * ratio), 1), cell_h - 1)
    assert 1 <= hole_w < cell_w and 1 <= hole_h < cell_h


@pytest.mark.parametrize('num', [2, 3, 7])
def test_derangement_fallback_has_no_fixed_points(num):
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        perm = derangement(num, torch.device('cpu'), max_tries=0,
                           generator=g)
        assert sorted(perm.tolist()) == list(range(num))
        assert not bool((perm == torch.arange(num)).any())
