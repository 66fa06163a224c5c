"""Tests for the matching / merging / source-tracking primitives."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mergemix_mm.models.tome import (bipartite_soft_matching, init_source,
                                     merge_source, merge_wavg, recover,
                                     recover_patch_grid, reorder_tokens,
                                     source_order, source_to_sizes)


def _naive_matching(metric, r, p):
    """Per-sample loop reference of the specified matching."""
    B, T, _ = metric.shape
    maps = []
    for b in range(B):
        m = torch.nn.functional.normalize(metric[b], dim=-1)
        a_ids = [t for t in range(0, T, 2) if t >= p]
        b_ids = [t for t in range(1, T, 2) if t >= p]
        best = {}
        for a in a_ids:
            sims = torch.stack([m[a] @ m[j] for j in b_ids])
            best[a] = (sims.max().item(), b_ids[int(sims.argmax())])
        ranked = sorted(a_ids, key=lambda a: -best[a][0])
        src = set(ranked[:r])
        order = list(range(p)) + [a for a in a_ids if a not in src] + b_ids
        out_of = {t: i for i, t in enumerate(order)}
        tmap = [
            out_of[t] if t in out_of else out_of[best[t][1]] for t in range(T)
        ]
        maps.append(tmap)
    return torch.tensor(maps)


@pytest.mark.parametrize('T,p,r', [(17, 1, 5), (17, 1, 8), (18, 2, 8),
                                   (16, 0, 4), (21, 3, 6), (10, 1, 1)])
def test_matching_matches_reference(T, p, r):
    metric = torch.randn(3, T, 8, generator=torch.Generator().manual_seed(T))
    m = bipartite_soft_matching(metric, r, num_protected=p)
    assert m.num_out == T - r
    assert torch.equal(m.token_map, _naive_matching(metric, r, p))


def test_tome_order_for_cls():
    """num_protected=1: output = [unmerged A sorted (CLS first), all B]."""
    T, r = 13, 4
    metric = torch.randn(2, T, 6, generator=torch.Generator().manual_seed(0))
    m = bipartite_soft_matching(metric, r, 1)
    for b in range(2):
        merged = set(m.src_idx[b].tolist())
        unm_a = [t for t in range(0, T, 2) if t not in merged]
        expected = unm_a + list(range(1, T, 2))
        assert m.keep_idx[b].tolist() == expected


@settings(max_examples=40, deadline=None)
@given(
    T=st.integers(2, 40),
    p=st.integers(0, 3),
    frac=st.floats(0, 1),
    seed=st.integers(0, 10_000))
def test_matching_invariants(T, p, frac, seed):
    p = min(p, T)
    r = int(frac * ((T - p) // 2))
    metric = torch.randn(
        2, T, 5, generator=torch.Generator().manual_seed(seed))
    m = bipartite_soft_matching(metric, r, p)
    tm = m.token_map
    assert tm.shape == (2, T)
    assert tm.min() >= 0 and tm.max() < T - r
    for b in range(2):
        # every output slot receives at least one input token
        assert set(tm[b].tolist()) == set(range(T - r))
        # protected tokens keep their index, nothing else maps onto them
        assert tm[b, :p].tolist() == list(range(p))
        assert (tm[b, p:] >= p).all()
        # merged tokens are A tokens (even) that land on B tokens (odd)
        assert all(t % 2 == 0 and t >= p for t in m.src_idx[b].tolist())
        assert all(m.keep_idx[b, d].item() % 2 == 1
                   for d in m.dst_idx[b].tolist())


def test_matching_is_per_sample():
    metric = torch.randn(4, 25, 8, generator=torch.Generator().manual_seed(3))
    full = bipartite_soft_matching(metric, 10, 1).token_map
    for b in range(4):
        single = bipartite_soft_matching(metric[b:b + 1], 10, 1).token_map
        assert torch.equal(full[b:b + 1], single)


@pytest.mark.parametrize('r', [-1, 9, 100])
def test_matching_bad_r(r):
    with pytest.raises(ValueError, match='r='):
        bipartite_soft_matching(torch.randn(1, 17, 4), r, 1)


def test_r_zero_is_identity():
    m = bipartite_soft_matching(torch.randn(2, 9, 4), 0, 1)
    assert torch.equal(m.token_map, torch.arange(9).expand(2, -1))
    x = torch.randn(2, 9, 4)
    out, size = merge_wavg(x, None, m)
    assert out is x and size is None


def _onehot(token_map, n_out):
    B, T = token_map.shape
    return torch.zeros(B, n_out, T).scatter_(1, token_map[:, None], 1.0)


def test_merge_wavg_is_size_weighted_average():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 15, 6, generator=g)
    size = torch.randint(1, 5, (2, 15, 1), generator=g).float()
    m = bipartite_soft_matching(torch.randn(2, 15, 4, generator=g), 6, 1)
    out, new_size = merge_wavg(x, size, m)
    S = _onehot(m.token_map, m.num_out)
    ref_size = S @ size
    ref = (S @ (x * size)) / ref_size
    assert torch.allclose(new_size, ref_size)
    assert torch.allclose(out, ref, atol=1e-6)
    # sizes are conserved
    assert torch.allclose(new_size.sum(1), size.sum(1))
    # size=None behaves like all ones
    out1, s1 = merge_wavg(x, None, m)
    out2, s2 = merge_wavg(x, torch.ones_like(size), m)
    assert torch.allclose(out1, out2) and torch.equal(s1, s2)


def test_merge_wavg_gradient():
    x = torch.randn(2, 11, 4, requires_grad=True)
    m = bipartite_soft_matching(x.detach(), 4, 1)
    out, _ = merge_wavg(x, None, m)
    out.sum().backward()
    # every token contributes: grad = 1 / group size
    S = _onehot(m.token_map, m.num_out)
    group = S.sum(-1).gather(1, m.token_map)
    assert torch.allclose(x.grad, (1 / group)[..., None].expand_as(x))


def test_source_tracking_and_recover():
    g = torch.Generator().manual_seed(7)
    B, T = 2, 21
    x = torch.randn(B, T, 6, generator=g)
    source = init_source(B, T, x.device)
    size = None
    composed = torch.eye(T).expand(B, T, T)  # [B, T_cur, T0]
    for r in (5, 4, 3):
        m = bipartite_soft_matching(x, r, 1)
        x, size = merge_wavg(x, size, m)
        source = merge_source(source, m)
        composed = _onehot(m.token_map, m.num_out) @ composed
    n = x.shape[1]
    assert n == T - 12
    # the map agrees with the composed one-hot source matrix
    assert torch.equal(_onehot(source, n), composed)
    # each original token maps to exactly one current token, CLS stays at 0
    assert source[:, 0].eq(0).all() and (source[:, 1:] > 0).all()
    assert torch.equal(source_to_sizes(source, n).float(), size[..., 0])
    # recover gathers per original token
    scores = torch.arange(n).float().expand(B, n)
    assert torch.equal(recover(scores, source), source.float())
    feats = recover(x, source)
    assert feats.shape == (B, T, 6)
    assert torch.equal(feats[:, 5], x[torch.arange(B), source[:, 5]])


def test_recover_patch_grid():
    source = torch.tensor([[0, 1, 1, 2, 3]])
    grid = recover_patch_grid(
        torch.tensor([[9., 1., 2., 3.]]), source, 1, (2, 2))
    assert grid.tolist() == [[[1., 1.], [2., 3.]]]
    with pytest.raises(ValueError, match='num_extra_tokens'):
        recover_patch_grid(torch.zeros(1, 4), source, 1, (3, 3))


def _merged(B=3, T=33, rs=(6, 5, 4), seed=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, 8, generator=g)
    source, size = init_source(B, T, x.device), None
    for r in rs:
        m = bipartite_soft_matching(x, r, 1)
        x, size = merge_wavg(x, size, m)
        source = merge_source(source, m)
    return x, size, source


def test_source_order_restores_sequence_order():
    """After merging the tokens are out of order ([CLS, unmerged A, B]);
    ``source_order`` sorts them by the first original token they hold, and
    ``reorder_tokens`` keeps tokens, sizes and the source map consistent."""
    x, size, source = _merged()
    B, n = x.shape[:2]
    first = torch.stack([
        torch.stack([(source[b] == t).nonzero()[0, 0] for t in range(n)])
        for b in range(B)
    ])
    assert not (first.diff(dim=1) > 0).all()  # merging broke the order
    order = source_order(source, n)
    assert torch.equal(order, first.argsort(dim=1))
    x2, size2, source2 = reorder_tokens(x, size, source, order)
    first2 = first.gather(1, order)
    assert (first2.diff(dim=1) > 0).all() and (first2[:, 0] == 0).all()
    # every original token still reads the same features and size
    assert torch.equal(recover(x2, source2), recover(x, source))
    assert torch.equal(recover(size2[..., 0], source2),
                       recover(size[..., 0], source))
    assert torch.equal(source_to_sizes(source2, n).float(), size2[..., 0])
    # with no merge the order is the identity
    ident = init_source(2, 7)
    assert torch.equal(source_order(ident, 7), ident)


def test_reorder_tokens_gradient_and_errors():
    x, size, source = _merged()
    x = x.detach().requires_grad_()
    order = source_order(source, x.shape[1])
    out, none_size, _ = reorder_tokens(x, None, source, order)
    assert none_size is None
    out.mul(torch.arange(out.shape[1]).view(1, -1, 1)).sum().backward()
    # each token gets the gradient of the position it moved to
    assert torch.equal(x.grad[..., 0],
                       torch.empty_like(order).scatter_(
                           1, order,
                           torch.arange(order.shape[1]).expand_as(order)
                       ).float())
    with pytest.raises(ValueError, match='order has shape'):
        reorder_tokens(x, size, source, order[:, 1:])
    with pytest.raises(ValueError, match='holds no original token'):
        source_order(source, x.shape[1] + 1)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_sizes_stay_float32_under_half_precision(dtype):
    """Sizes are kept in float32 whatever the token dtype, so they stay
    exact integers (bfloat16 holds integers exactly only up to 256): after
    token 1 has absorbed 300 others its size is 301, and the merged value
    is the size-weighted mean."""
    from mergemix_mm.models.tome import Matching
    T, C = 604, 4
    x = torch.zeros(1, T, C, dtype=dtype)
    x[0, 1] = 1.
    keep = torch.cat([torch.arange(2), torch.arange(302, T)])[None]
    matching = Matching(304, 300, keep, torch.arange(2, 302)[None],
                        torch.ones(1, 300, dtype=torch.long))
    out, size = merge_wavg(x, torch.ones(1, T, 1, dtype=dtype), matching)
    assert size.dtype == torch.float32
    assert size[0, 1, 0].item() == 301 and size.sum().item() == T
    torch.testing.assert_close(out[0, 1].float(), torch.full((C, ), 1 / 301),
                               rtol=0, atol=2e-3)  # bf16 tokens
