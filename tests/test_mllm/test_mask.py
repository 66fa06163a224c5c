"""Mask builder, partners and the hand-crafted losers."""
import pytest
import torch

from mergemix_mm.mllm import (Saliency, build_losers, derangement,
                              grouped_partner, merged_topk_keep_mask,
                              topk_keep_mask)


def _distinct_images(n, size=16, seed=0):
    # every image has its own constant offset -> pixels identify the source
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) + \
        10 * torch.arange(n).view(n, 1, 1, 1)


def test_derangement_has_no_fixed_point():
    for n in (2, 3, 5, 17):
        for seed in range(20):
            g = torch.Generator().manual_seed(seed)
            p = derangement(n, generator=g)
            assert sorted(p.tolist()) == list(range(n))
            assert not (p == torch.arange(n)).any()
    with pytest.raises(ValueError, match='n >= 2'):
        derangement(1)


def test_grouped_partner_stays_in_group():
    groups = ['a', 'b', 'a', 'c', 'a', 'b']
    gen = torch.Generator().manual_seed(0)
    partner, valid = grouped_partner(groups, generator=gen)
    assert valid.tolist() == [True, True, True, False, True, True]
    for i, p in enumerate(partner.tolist()):
        assert groups[p] == groups[i]
        if valid[i]:
            assert p != i


@pytest.mark.parametrize('lam', [0.0, 0.3, 0.5, 0.99, 1.0])
def test_mergemix_loser_keeps_exactly_k_patches(lam):
    n, grid, unit = 4, (4, 4), 4
    images = _distinct_images(n)
    scores = torch.rand(n, 16, generator=torch.Generator().manual_seed(1))
    partner = torch.tensor([1, 2, 3, 0])
    losers = build_losers(images, partner, lam, 'mergemix',
                          Saliency(scores, grid, unit))
    k = int(lam * 16)
    patches = losers.images.unfold(2, unit, unit).unfold(3, unit, unit)
    own = images.unfold(2, unit, unit).unfold(3, unit, unit)
    other = images[partner].unfold(2, unit, unit).unfold(3, unit, unit)
    same = (patches == own).flatten(4).all(-1).all(1).flatten(1)  # [n, 16]
    from_partner = (patches == other).flatten(4).all(-1).all(1).flatten(1)
    assert same.sum(1).tolist() == [k] * n
    assert (same | from_partner).all()
    # the kept patches are the k most salient ones
    top = scores.topk(k, dim=1).indices if k else torch.empty(n, 0).long()
    for i in range(n):
        assert set(same[i].nonzero().flatten().tolist()) == set(
            top[i].tolist())
    assert torch.allclose(losers.lam_kept, torch.full((n, ), k / 16))


def test_merged_topk_expands_groups():
    # 4 patches, merged tokens: CLS=0, t1={p0,p1}, t2={p2}, t3={p3}
    source = torch.tensor([[0, 1, 1, 2, 3]])
    merged_scores = torch.tensor([[9.0, 0.9, 0.1, 0.5]])
    keep = merged_topk_keep_mask(merged_scores, source, lam=0.5)
    # k = floor(0.5 * 3) = 1 merged token (t1) -> 2 of 4 patches kept
    assert keep.tolist() == [[True, True, False, False]]
    assert topk_keep_mask(torch.tensor([[0.9, 0.9, 0.1, 0.5]]),
                          0.5).sum() == 2


@pytest.mark.parametrize('method', ['cutmix', 'resizemix', 'mixup'])
def test_baseline_lam_is_the_kept_fraction(method):
    images = _distinct_images(3, size=32)
    partner = torch.tensor([2, 0, 1])
    g = torch.Generator().manual_seed(3)
    for lam in (0.1, 0.45, 0.9):
        losers = build_losers(images, partner, lam, method, generator=g)
        if method == 'mixup':
            expect = lam * images + (1 - lam) * images[partner]
            assert torch.allclose(losers.images, expect)
            assert torch.allclose(losers.lam_kept, torch.full((3, ), lam))
            continue
        kept = (losers.images == images).all(1).float().mean((1, 2))
        assert torch.allclose(losers.lam_kept, kept)


def test_bad_lambda_and_shapes():
    with pytest.raises(ValueError, match='lam'):
        topk_keep_mask(torch.rand(2, 4), 1.5)
    with pytest.raises(ValueError, match='saliency grid'):
        build_losers(torch.rand(2, 3, 16, 16), torch.tensor([1, 0]), 0.5,
                     'mergemix', Saliency(torch.rand(2, 4), (2, 2), 4))


@pytest.mark.parametrize('n', [2, 3, 5])
def test_derangement_fallback_has_no_fixed_point(monkeypatch, n):
    """Every ``randperm`` draw is the identity, so the cyclic-shift
    fallback runs; its shift must never be 0."""
    calls = []

    def identity(size, *args, **kwargs):
        calls.append(size)
        return torch.arange(size)

    monkeypatch.setattr(torch, 'randperm', identity)
    seen = set()
    for seed in range(50):
        g = torch.Generator().manual_seed(seed)
        p = derangement(n, generator=g)
        assert sorted(p.tolist()) == list(range(n))
        assert not (p == torch.arange(n)).any()
        seen.add(tuple(p.tolist()))
    assert calls and set(calls) == {n}
    # the fallback is a cyclic shift and every non-zero shift occurs
    assert seen == {tuple(((torch.arange(n) + s) % n).tolist())
                    for s in range(1, n)}


def _box_side_ratios(monkeypatch, loser, lam, **kwargs):
    """The ``side_ratio`` of every box the MLLM baseline ``loser`` draws
    for two 20 px images at ``lam``."""
    import mergemix_mm.mllm.baselines as baselines
    seen = []
    original = baselines.random_box

    def spy(height, width, side_ratio, generator=None):
        seen.append(side_ratio)
        return original(height, width, side_ratio, generator)

    monkeypatch.setattr(baselines, 'random_box', spy)
    getattr(baselines, loser)(torch.rand(2, 3, 20, 20), torch.tensor([1, 0]),
                              lam, **kwargs)
    return seen


@pytest.mark.parametrize('lam, ratio', [(0.64, 0.6), (0.19, 0.9)])
def test_cutmix_loser_box_side_law(monkeypatch, lam, ratio):
    """The CutMix loser's box side ratio is ``sqrt(1 - lam)``."""
    seen = _box_side_ratios(monkeypatch, 'cutmix_loser', lam)
    assert seen == [pytest.approx(ratio)]


@pytest.mark.parametrize('lam, tau', [(0.0, 0.1), (0.25, 0.275), (1.0, 0.8)])
def test_resizemix_loser_tau_law(monkeypatch, lam, tau):
    """The ResizeMix loser's side ratio is ``lo + (hi - lo) * lam`` (the
    official LLaVA law): the pasted partner grows with lambda."""
    seen = _box_side_ratios(monkeypatch, 'resizemix_loser', lam,
                            scope=(0.1, 0.8))
    assert seen == [pytest.approx(tau)]
