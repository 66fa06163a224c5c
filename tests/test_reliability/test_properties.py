"""Property-based tests (hypothesis) of the mask / lambda invariants over
random image sizes, batch sizes, lambdas and merge counts (issue 10, item 5).
"""
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS

from mergemix_mm.models.batch_augments import (derangement, mix_scores,
                                               rescale_lam, topk_keep_mask)
from mergemix_mm.models.tome import (bipartite_soft_matching, check_schedule,
                                     init_source, merge_source,
                                     schedule_from_merge_num, source_to_sizes)

PATCH = 8
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.data_too_large])
_MODELS = {}


def classifier(augment: dict):
    """A tiny ViT MergeMixClassifier (2 blocks, patch 8) with one augment."""
    key = repr(sorted(augment.items()))
    if key not in _MODELS:
        torch.manual_seed(0)
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            _MODELS[key] = MODELS.build(
                dict(
                    type='MergeMixClassifier',
                    backbone=dict(
                        type='VisionTransformer',
                        arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                                  feedforward_channels=64),
                        img_size=32, patch_size=PATCH,
                        out_type='cls_token'),
                    head=dict(type='MixLabelClsHead', num_classes=10,
                              in_channels=32),
                    data_preprocessor=dict(num_classes=10, mean=[0.] * 3,
                                           std=[1.] * 3, to_rgb=False),
                    train_cfg=dict(augments=[augment])))
    return _MODELS[key].data_preprocessor.batch_augments.augments[0]


def one_hot(labels):
    return torch.eye(10)[labels]


batch_sizes = st.integers(2, 6)
grids = st.tuples(st.integers(2, 5), st.integers(2, 5))
lams = st.floats(0.0, 1.0, allow_nan=False)


# ----------------------------------------------------------------------
# MergeMix
@SETTINGS
@given(B=batch_sizes, grid=grids, lam=lams, merge_frac=st.floats(0, 1),
       mode=st.sampled_from(['batch', 'elem']),
       reduction=st.sampled_from(['batch', 'sample']),
       lam_scale=st.booleans(), leaked=st.booleans(),
       compat=st.sampled_from([None, 'openmixup', 'llava']),
       seed=st.integers(0, 2**16))
def test_mergemix_mask_and_lambda_invariants(B, grid, lam, merge_frac, mode,
                                             reduction, lam_scale, leaked,
                                             compat, seed):
    h, w = grid
    N = h * w
    merge_num = int(round(merge_frac * N))
    aug = classifier(dict(type='MergeMix', attn_layer=1))
    aug.merge_num, aug.mode, aug.lam_reduction = merge_num, mode, reduction
    aug.lam_scale, aug.mask_leaked, aug.compat = lam_scale, leaked, compat
    aug._schedules.clear()
    g = torch.Generator().manual_seed(seed)
    lam_draw = torch.rand(B, generator=g) if mode == 'elem' else \
        torch.full((B, ), lam)
    aug._draw_lam = lambda b, device: lam_draw.clone()
    torch.manual_seed(seed)
    x = torch.randn(B, 3, h * PATCH, w * PATCH, generator=g)
    labels = torch.randint(0, 10, (B, ), generator=g)
    try:
        mixed, scores = aug(x, one_hot(labels))
    except ValueError as err:  # a merge count the 2 blocks cannot merge
        assert f'merge_num={merge_num}' in str(err)
        assume(False)
    rec = aug.pop_record()
    mask = rec.mask
    # mask: binary, one value per patch cell, the right size
    assert mask.shape == (B, 1, h * PATCH, w * PATCH)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    cells = mask[:, 0].reshape(B, h, PATCH, w, PATCH)
    assert torch.equal(cells.amax((2, 4)), cells.amin((2, 4)))
    kept = cells[:, :, 0, :, 0].flatten(1).sum(1)
    if compat != 'llava':  # exactly floor(lam * N) patches are kept
        k = torch.floor(lam_draw * N)
        assert torch.equal(kept, N - k if leaked else k)
    assert torch.allclose(rec.extra['lam_mask'], kept / N)
    # label weights
    assert torch.isfinite(rec.lam).all()
    assert ((rec.lam >= 0) & (rec.lam <= 1)).all()
    if not lam_scale:
        expect = kept / N
        if reduction == 'batch':
            expect = expect.mean().expand(B)
        assert torch.allclose(rec.lam, expect, atol=1e-6)
    elif reduction == 'batch':
        assert torch.allclose(rec.lam, rec.lam[:1].expand(B))
    # partners: a permutation, without self-pairs except in 'openmixup'
    assert sorted(rec.index.tolist()) == list(range(B))
    if compat != 'openmixup':
        assert not (rec.index == torch.arange(B)).any()
    # the mixed batch and its soft labels
    assert torch.allclose(mixed, mask * x + (1 - mask) * x[rec.index])
    assert torch.allclose(scores.sum(1), torch.ones(B), atol=1e-6)
    assert torch.allclose(scores, mix_scores(one_hot(labels), rec.index,
                                             rec.lam))


# ----------------------------------------------------------------------
# every baseline augment: finite output, soft labels that are
# distributions, shape kept, or a clear error naming a setting
BASELINES = {
    'AttentiveCutMix': dict(grid_size=2),
    'FMix': {},
    'GridMix': {},
    'MixPro': dict(mask_patch_size=8),
    'ResizeMixTau': {},
    'SaliencyMix': {},
    'SMMix': {},
    'SmoothMix': {},
    'TdAttenMix': {},
    'TokenMix': {},
    'TransMix': {},
}


@pytest.mark.parametrize('name', sorted(BASELINES))
@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(B=batch_sizes, grid=grids, seed=st.integers(0, 2**16))
def test_baseline_outputs_are_finite_distributions(name, B, grid, seed):
    aug = classifier(dict(type=name, **BASELINES[name]))
    h, w = grid
    if name in ('SMMix', 'TdAttenMix'):  # min_side_ratio=0.25: >= 4 patches
        h, w = h + 2, w + 2
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    np.random.seed(seed)
    x = torch.randn(B, 3, h * PATCH, w * PATCH, generator=g)
    y = one_hot(torch.randint(0, 10, (B, ), generator=g))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            mixed, scores = aug(x, y)
    except ValueError as err:  # e.g. SMMix boxes on a 2x2 patch grid
        assert '=' in str(err) and name in str(err)
        assume(False)
    assert mixed.shape == x.shape and torch.isfinite(mixed).all()
    assert ((scores >= -1e-6) & (scores <= 1 + 1e-6)).all()
    assert torch.allclose(scores.sum(1), torch.ones(B), atol=1e-5)
    if hasattr(aug, 'pop_record'):
        aug.pop_record()


# ----------------------------------------------------------------------
# functional pieces
@SETTINGS
@given(B=st.integers(1, 5), N=st.integers(1, 40), data=st.data(),
       ties=st.booleans())
def test_topk_keep_mask_keeps_exactly_k_highest(B, N, data, ties):
    k = torch.tensor(data.draw(st.lists(st.integers(0, N), min_size=B,
                                        max_size=B)))
    g = torch.Generator().manual_seed(N * 7 + B)
    scores = torch.randint(0, 3, (B, N), generator=g).float() if ties \
        else torch.randn(B, N, generator=g)
    keep = topk_keep_mask(scores, k)
    assert torch.equal(keep.sum(1), k)
    for b in range(B):
        if 0 < k[b] < N:
            assert scores[b][keep[b]].min() >= scores[b][~keep[b]].max()
    assert torch.equal(keep, topk_keep_mask(scores, k))  # deterministic


@SETTINGS
@given(n=st.integers(0, 50), seed=st.integers(0, 2**16))
def test_derangement_is_a_permutation_without_fixed_points(n, seed):
    g = torch.Generator().manual_seed(seed)
    perm = derangement(n, torch.device('cpu'), generator=g)
    assert sorted(perm.tolist()) == list(range(n))
    if n >= 2:
        assert not (perm == torch.arange(n)).any()


@SETTINGS
@given(lam_mask=st.lists(st.floats(0, 1), min_size=1, max_size=16),
       mu=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_rescaled_lambda_stays_in_unit_interval(lam_mask, mu, seed):
    torch.manual_seed(seed)
    lam = rescale_lam(torch.tensor(lam_mask), mu)
    assert torch.isfinite(lam).all() and (lam >= 0).all() and (lam <= 1).all()


@SETTINGS
@given(B=st.integers(1, 8), C=st.integers(2, 12), seed=st.integers(0, 999),
       scalar=st.booleans())
def test_mix_scores_are_distributions(B, C, seed, scalar):
    g = torch.Generator().manual_seed(seed)
    scores = torch.softmax(torch.randn(B, C, generator=g), 1)
    index = torch.randperm(B, generator=g)
    lam = torch.rand((), generator=g) if scalar else torch.rand(
        B, generator=g)
    mixed = mix_scores(scores, index, lam)
    assert torch.allclose(mixed.sum(1), torch.ones(B), atol=1e-6)
    assert (mixed >= 0).all()


@SETTINGS
@given(num_layers=st.integers(1, 12), patches=st.integers(4, 200),
       frac=st.floats(0, 1), inflect=st.floats(-1, 1))
def test_merge_schedule_sums_to_merge_num_or_says_why(num_layers, patches,
                                                      frac, inflect):
    merge_num = int(frac * patches)
    try:
        r_list = schedule_from_merge_num(
            num_layers, merge_num, inflect, num_tokens=patches + 1)
    except ValueError as err:
        assert f'merge_num={merge_num}' in str(err)
        return
    assert len(r_list) == num_layers and min(r_list) >= 0
    assert sum(r_list) == merge_num
    check_schedule(r_list, patches + 1, 1)


@SETTINGS
@given(B=st.integers(1, 3), T=st.integers(2, 40), frac=st.floats(0, 1),
       protected=st.integers(0, 2), seed=st.integers(0, 999))
def test_merging_keeps_every_original_token_exactly_once(B, T, frac,
                                                         protected, seed):
    protected = min(protected, T - 1)
    mergeable = (T - protected) // 2
    r = int(frac * mergeable)
    g = torch.Generator().manual_seed(seed)
    metric = torch.randn(B, T, 8, generator=g)
    matching = bipartite_soft_matching(metric, r, num_protected=protected)
    source = merge_source(init_source(B, T), matching)
    assert source.min() >= 0 and source.max() < T - r
    sizes = source_to_sizes(source, T - r)
    assert torch.equal(sizes.sum(1), torch.full((B, ), T))
    assert (sizes >= 1).all()  # no merged token is empty
    if protected:  # protected tokens stay themselves, in front
        assert torch.equal(source[:, :protected],
                           torch.arange(protected).expand(B, -1))


@SETTINGS
@given(B=st.integers(1, 4), N=st.integers(1, 64), lam=lams,
       seed=st.integers(0, 999))
def test_mllm_topk_keeps_floor_lambda_n(B, N, lam, seed):
    from mergemix_mm.mllm.mask import topk_keep_mask as mllm_topk
    g = torch.Generator().manual_seed(seed)
    keep = mllm_topk(torch.randn(B, N, generator=g), lam)
    assert torch.equal(keep.sum(1), torch.full((B, ), math.floor(lam * N)))
