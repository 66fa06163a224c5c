"""Laws of the ToMe core checked against hand-computed expectations.

Each test pins one behaviour of ``ALGORITHM.md`` §3 / §10 (A6-A8, A12) that
the other ToMe tests left open: schedule remainder and clamp rules, the
position of the merge inside a block (after the attention residual, before
the MLP), attention captured before dropout, dropout / drop-path handling,
protected-token geometry, the ``prop_attn`` and ``merging`` switches of the
backbones, and the arithmetic of the FLOP / speed tools.
"""
import importlib.util
import os.path as osp
import types

import pytest
import torch
from mmpretrain.models.backbones import (DistilledVisionTransformer,
                                         VisionTransformer)
from mmpretrain.registry import MODELS
from timm.models.vision_transformer import VisionTransformer as TimmViT
from tome_utils import TINY_ARCH, randomize_

from mergemix_mm.models.tome import (check_schedule, forward_with_attention,
                                     head_mean_metric, init_source, parse_r,
                                     recover_patch_grid, resolve_schedule,
                                     schedule_from_merge_num,
                                     schedule_from_setting, search_r,
                                     tome_timm_forward, tome_vit_forward)
from mergemix_mm.models.tome.functional import normalize_attn_layer
from mergemix_mm.models.tome.mmpretrain_vit import tome_layer_forward
from mergemix_mm.models.tome.timm_vit import tome_timm_block_forward

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TIMM_TINY = dict(img_size=32, patch_size=4, embed_dim=32, num_heads=4)


def _images(n=2, size=32, seed=1):
    return torch.randn(
        n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _tool(name):
    """Import ``tools/analysis/<name>.py`` as a module."""
    path = osp.join(ROOT, 'tools', 'analysis', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'_law_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _naive_token_map(metric, r, p):
    """Bipartite soft matching written out per sample (§3.1).

    Args:
        metric (Tensor): ``[B, T, C]`` matching features.
        r (int): Tokens to merge away.
        p (int): Protected leading tokens.

    Returns:
        Tensor: ``LongTensor[B, T]`` input token -> output slot, with the
        output order ``[protected, unmerged A, B]``.
    """
    maps = []
    for m in torch.nn.functional.normalize(metric, dim=-1):
        T = m.shape[0]
        a_ids = [t for t in range(p, T) if t % 2 == 0]
        b_ids = [t for t in range(p, T) if t % 2 == 1]
        best = {}
        for a in a_ids:
            sims = [float(m[a] @ m[b]) for b in b_ids]
            j = max(range(len(b_ids)), key=lambda i: sims[i])
            best[a] = (sims[j], b_ids[j])
        ranked = sorted(a_ids, key=lambda a: -best[a][0])
        merged = set(ranked[:r])
        order = list(range(p)) + [a for a in a_ids if a not in merged] + b_ids
        slot = {t: i for i, t in enumerate(order)}
        maps.append([
            slot[t] if t in slot else slot[best[t][1]] for t in range(T)
        ])
    return torch.tensor(maps)


def _naive_merge(x, size, token_map, n_out):
    """Size-weighted average merge through a one-hot matrix."""
    B, T, _ = x.shape
    onehot = torch.zeros(B, n_out, T).scatter_(1, token_map[:, None], 1.0)
    new_size = onehot @ size
    return onehot @ (x * size) / new_size, new_size


# --------------------------------------------------------------- schedules


def test_remainder_goes_to_the_last_block_unless_decreasing():
    """§3.4 / A8: the leftover of ``merge_num`` joins the first block for a
    negative inflection only; otherwise the last block."""
    # inflect 0: r=2 gives [2, 2, 2, 2] (8); r=3 gives 12; first best is 2
    assert parse_r(4, (2, 0.0), total=10) == [2, 2, 2, 4]
    assert schedule_from_merge_num(4, 10, inflect=0.0) == [2, 2, 2, 4]
    # inflect 0.5: int(2 * 0.5) = 1 up to 3 -> [1, 1, 2, 3] (7)
    assert parse_r(4, (2, 0.5), total=9) == [1, 1, 2, 5]
    # inflect -0.5: 7 down to 3 -> [7, 5, 4, 3] (19)
    assert parse_r(4, (5, -0.5), total=20) == [8, 5, 4, 3]


def test_check_schedule_clamp_is_floor_of_unprotected_half():
    """A8: a block can merge at most ``(T - protected) // 2`` tokens."""
    assert check_schedule([8], 18, 1) == [18, 10]
    with pytest.raises(ValueError, match='only 8 of its 18 tokens'):
        check_schedule([9], 18, 1)
    assert check_schedule([7, 4], 17, 2) == [17, 10, 6]
    with pytest.raises(ValueError, match='block 1'):
        check_schedule([7, 4], 17, 3)  # (10 - 3) // 2 = 3 < 4


def test_search_r_only_stops_when_the_gap_grows():
    """One block, inflect 0.5: ``r`` = 0, 1, 2 give the schedules [0], [0],
    [1], i.e. gaps 3, 3, 2 to ``merge_num=3``; a tie must not end the
    search, so the first best is ``r=2``."""
    assert search_r(1, 3, 0.5) == 2
    assert search_r(12, 98) == 9  # gaps 7 (r=8), 5 (r=9), 17 (r=10)


def test_setting_names_use_the_redistributed_schedule():
    """The tools' ``merge<N>`` setting merges exactly ``N`` tokens, also
    where OpenMixup's raw schedule has a negative first entry (24 blocks,
    98 tokens: ``-4`` clamped and taken back from the largest entries)."""
    r_list = schedule_from_setting('merge98', 24)
    assert sum(r_list) == 98 and min(r_list) >= 0 and r_list[0] == 0
    assert schedule_from_setting('r3', 2) == [3, 3]


@pytest.mark.parametrize('builder', ['resolve', 'backbone'])
def test_merge_inflect_reaches_train_and_test_schedules(builder):
    """``merge_inflect`` shapes the schedule: inflect 0 spreads 20 tokens
    evenly over 4 blocks, -0.5 gives 7, 5, 4, 3 plus the remainder first."""
    if builder == 'resolve':
        assert resolve_schedule(4, merge_num=20, inflect=0.0) == [5] * 4
        assert resolve_schedule(4, merge_num=20) == [8, 5, 4, 3]
        return
    model = MODELS.build(
        dict(type='ToMeVisionTransformer', arch=TINY_ARCH, img_size=32,
             patch_size=4, merge_num=20, test_merge_num=12,
             merge_inflect=0.0))
    assert model.train_r_list == [5, 5, 5, 5]
    assert model.test_r_list == [3, 3, 3, 3]


# ------------------------------------------------------------- primitives


def test_recover_patch_grid_skips_every_extra_token():
    """A12: the grid starts after *all* extra tokens (CLS + distillation)."""
    source = torch.tensor([[0, 1, 2, 2, 3, 4]])
    scores = torch.tensor([[9., 8., 1., 2., 3.]])
    grid = recover_patch_grid(scores, source, 2, (2, 2))
    assert grid.tolist() == [[[1., 1.], [2., 3.]]]


def test_head_mean_metric_is_the_mean_over_heads():
    """``[B, H, T, d]`` keys -> ``[B, T, d]`` mean over the heads."""
    keys = torch.arange(2 * 3 * 2 * 1, dtype=torch.float).view(2, 3, 2, 1)
    # sample 0: heads hold [0, 1], [2, 3], [4, 5] -> mean [2, 3]
    assert head_mean_metric(keys).tolist() == [[[2.], [3.]], [[8.], [9.]]]


@pytest.mark.parametrize('heads', [1, 2, 6])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64,
                                   torch.bfloat16])
def test_head_mean_metric_on_strided_qkv_keys(heads, dtype):
    """The keys as the blocks hand them over (a strided view of the fused
    qkv output): the metric is the mean over heads for every dtype and head
    count, and gradients reach the keys."""
    g = torch.Generator().manual_seed(0)
    qkv = torch.randn(3, 5, 3, heads, 8, generator=g, dtype=torch.float64)
    qkv = qkv.to(dtype).requires_grad_()
    keys = qkv.permute(2, 0, 3, 1, 4)[1]  # [B, H, T, d], not contiguous
    assert not keys.is_contiguous()
    metric = head_mean_metric(keys)
    assert metric.shape == (3, 5, 8) and metric.dtype == dtype
    torch.testing.assert_close(metric, keys.mean(dim=1))
    metric.sum().backward()
    expected = torch.zeros_like(qkv)
    expected[:, :, 1] = 1 / heads
    torch.testing.assert_close(qkv.grad, expected)


def test_negative_attn_layer_counts_from_the_end():
    assert normalize_attn_layer(-4, 4) == 0
    assert normalize_attn_layer(-1, 4) == 3
    with pytest.raises(ValueError, match='out of range'):
        normalize_attn_layer(-5, 4)


# ------------------------------------------------------- block placement


def _mmpretrain_layer():
    vit = randomize_(
        VisionTransformer(
            arch=dict(embed_dims=32, num_layers=1, num_heads=4,
                      feedforward_channels=64),
            img_size=32, patch_size=4))
    layer = vit.layers[0].eval()

    def reference(x):
        h = layer.ln1(x)
        B, T, _ = h.shape
        keys = layer.attn.qkv(h).reshape(B, T, 3, 4, 8)[:, :, 1].mean(2)
        return x + layer.attn(h), keys, (lambda m: layer.ffn(
            layer.ln2(m), identity=m))

    def step(x, r, size, source):
        return tome_layer_forward(layer, x, r, size, source, 1)

    return reference, step


def _timm_block():
    model = randomize_(
        TimmViT(depth=1, qk_norm=True, init_values=0.5, **TIMM_TINY))
    blk = model.blocks[0].eval()

    def reference(x):
        h = blk.norm1(x)
        B, T, _ = h.shape
        qkv = blk.attn.qkv(h).reshape(B, T, 3, 4, 8).permute(2, 0, 3, 1, 4)
        keys = blk.attn.k_norm(qkv[1]).mean(1)
        y = x + blk.drop_path1(blk.ls1(blk.attn(h)))
        return y, keys, (lambda m: m + blk.drop_path2(
            blk.ls2(blk.mlp(blk.norm2(m)))))

    def step(x, r, size, source):
        return tome_timm_block_forward(blk, x, r, size, source, 1)

    return reference, step


@pytest.mark.parametrize('make', [_mmpretrain_layer, _timm_block])
def test_block_merges_between_attention_residual_and_mlp(make):
    """§3.1: attention residual, then the size-weighted merge on the
    head-mean (normalised) keys, then the MLP on the merged tokens; sizes
    and the source map follow the merge."""
    reference, step = make()
    g = torch.Generator().manual_seed(11)
    B, T, r = 2, 17, 6
    x = torch.randn(B, T, 32, generator=g)
    size = torch.randint(1, 4, (B, T, 1), generator=g).float()
    with torch.no_grad():
        y, keys, mlp = reference(x)
        token_map = _naive_token_map(keys, r, 1)
        merged, ref_size = _naive_merge(y, size, token_map, T - r)
        ref = mlp(merged)
        out, out_size, out_source, _ = step(x, r, size, init_source(B, T))
    assert torch.equal(out_source, token_map)
    torch.testing.assert_close(out_size, ref_size)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------- dropout / drop path


def _mm_vit(train=False, **kwargs):
    """Tiny mmpretrain ViT (``BaseBackbone.train`` returns None, so the
    mode is set here)."""
    model = randomize_(
        VisionTransformer(arch=TINY_ARCH, img_size=32, patch_size=4,
                          **kwargs))
    model.train(train)
    return model


def _timm_vit(**kwargs):
    return randomize_(TimmViT(depth=4, **TIMM_TINY, **kwargs))


def _attn_dropout_vit(backend, train):
    """``(model, tome forward, stock forward)`` of a tiny ViT with attention
    dropout 0.5 in train or eval mode."""
    if backend == 'mmpretrain':
        model = _mm_vit(train, layer_cfgs=dict(attn_drop_rate=0.5))

        def stock(x):
            return model(x)[0]

        return model, tome_vit_forward, stock
    model = _timm_vit(attn_drop_rate=0.5).train(train)

    def stock(x):
        return model.forward_head(model.forward_features(x), True)

    return model, tome_timm_forward, stock


@pytest.mark.parametrize('backend', ['mmpretrain', 'timm'])
def test_captured_attention_is_taken_before_dropout(backend):
    """The returned attention is the plain softmax of the block's logits,
    not the dropped-out weights (train mode, attention dropout 0.5)."""
    if backend == 'mmpretrain':
        model = _mm_vit(True, layer_cfgs=dict(attn_drop_rate=0.5))
        norm, qkv, heads = model.layers[1].ln1, model.layers[1].attn.qkv, 4
        forward = tome_vit_forward
    else:
        model = _timm_vit(attn_drop_rate=0.5)
        norm, qkv, heads = model.blocks[1].norm1, model.blocks[1].attn.qkv, 4
        forward = tome_timm_forward
    model.train()
    seen = {}
    hook = norm.register_forward_hook(lambda m, i, o: seen.setdefault('h', o))
    with torch.no_grad():
        out = forward(model, _images(), [6, 4, 4, 4], attn_layer=1)
    hook.remove()
    h = seen['h']
    B, T, C = h.shape
    d = C // heads
    q, k, _ = qkv(h).reshape(B, T, 3, heads, d).permute(2, 0, 3, 1, 4)
    ref = (q @ k.transpose(-2, -1) * d**-0.5).softmax(-1)
    torch.testing.assert_close(out.attn, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('backend', ['mmpretrain', 'timm'])
def test_attention_dropout_is_off_in_eval_mode(backend):
    """In eval mode attention dropout is inactive: merged forwards are
    deterministic and the unmerged one equals the stock forward."""
    x = _images()
    model, forward, stock = _attn_dropout_vit(backend, train=False)
    with torch.no_grad():
        a = forward(model, x, [6, 4, 4, 4]).outs[0]
        b = forward(model, x, [6, 4, 4, 4]).outs[0]
        plain = forward(model, x, [0] * 4).outs[0]
        ref = stock(x)
    assert torch.equal(a, b)
    torch.testing.assert_close(plain, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('backend', ['mmpretrain', 'timm'])
def test_attention_dropout_is_applied_in_training(backend):
    """Train mode with attention dropout 0.5: the unmerged ToMe forward
    drops the same attention weights as the stock forward (same seed), and
    another seed gives another output."""
    x = _images()
    model, forward, stock = _attn_dropout_vit(backend, train=True)
    with torch.no_grad():
        torch.manual_seed(5)
        ref = stock(x)
        torch.manual_seed(5)
        plain = forward(model, x, [0] * 4).outs[0]
        torch.manual_seed(6)
        other = forward(model, x, [0] * 4).outs[0]
    torch.testing.assert_close(plain, ref, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(plain, other, atol=1e-3)


def test_drop_path_of_both_branches_matches_stock_in_training():
    """Train mode with drop path 0.5: the unmerged ToMe forward draws the
    same stochastic-depth masks, in the same order, as the stock layers
    (attention branch ``out_drop`` and MLP branch)."""
    model = _mm_vit(True, drop_path_rate=0.5)
    x = _images(n=8)
    with torch.no_grad():
        torch.manual_seed(3)
        ref = model(x)[0]
        torch.manual_seed(3)
        out = tome_vit_forward(model, x, [0] * 4).outs[0]
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_distilled_forward_skips_pre_norm_like_stock():
    """mmpretrain's distilled forward never applies ``pre_norm``; the ToMe
    forward without merging must give the stock outputs."""
    model = randomize_(
        DistilledVisionTransformer(
            arch=TINY_ARCH, img_size=32, patch_size=4, pre_norm=True,
            out_type='raw'))
    model.eval()
    x = _images()
    with torch.no_grad():
        ref = model(x)[0]
        out = tome_vit_forward(model, x, [0] * 4).outs[0]
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


# -------------------------------------------------------------- backbones


def _backbone(kind, **kwargs):
    if kind == 'timm':
        cfg = dict(type='ToMeTimmViT', model_name='vit_tiny_patch16_224',
                   depth=4, **TIMM_TINY)
    else:
        cfg = dict(type=kind, arch=TINY_ARCH, img_size=32, patch_size=4,
                   out_type='raw')
    return randomize_(MODELS.build(dict(cfg, **kwargs))).eval()


@pytest.mark.parametrize('kind', [
    'ToMeVisionTransformer', 'ToMeDistilledVisionTransformer', 'timm'
])
def test_backbone_prop_attn_reaches_every_forward(kind):
    """A7: ``prop_attn=True`` is used by ``forward``; ``tome_forward`` and
    ``forward_with_attention`` can override it either way."""
    model = _backbone(kind, merge_num=20, prop_attn=True)
    assert model.prop_attn is True
    x = _images()
    with torch.no_grad():
        y = model(x)[0]
        on = model.tome_forward(x, prop_attn=True).outs[0]
        off = model.tome_forward(x, prop_attn=False).outs[0]
        dispatched = forward_with_attention(model, x, prop_attn=False)
    torch.testing.assert_close(y, on, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(on, off, atol=1e-3)
    torch.testing.assert_close(dispatched.outs[0], off, rtol=1e-4,
                               atol=1e-5)


def test_merging_switch_restores_the_enclosing_state():
    """``merging()`` restores the state it found, also when nested."""
    model = _backbone('ToMeVisionTransformer', merge_num=20)
    model.train()
    with model.merging(False):
        with model.merging(False):
            pass
        assert model.current_r_list == [0] * 4
        with model.merging(True):
            assert model.current_r_list == model.train_r_list
        assert model.current_r_list == [0] * 4
    assert model.current_r_list == model.train_r_list == [8, 5, 4, 3]


def test_timm_schedule_is_checked_with_prefix_tokens():
    """ToMeTimmViT validates ``merge_num`` against patches + CLS (65 tokens:
    at most 32 merged in one block), not against the patches alone."""
    model = _backbone('timm', merge_num=32, depth=1)
    assert model.train_r_list == [32]
    with torch.no_grad():
        out = model.tome_forward(_images())
    assert out.token_counts == [65, 33]
    with pytest.raises(ValueError, match='merge_num=33'):
        _backbone('timm', merge_num=33, depth=1)


def test_distilled_schedule_is_checked_with_both_protected_tokens():
    """With CLS and distillation token protected, 9 patches + 2 = 11 tokens
    allow at most (11 - 2) // 2 = 4 merges in a block."""
    arch = dict(embed_dims=32, num_layers=1, num_heads=2,
                feedforward_channels=64)
    cfg = dict(type='ToMeDistilledVisionTransformer', arch=arch,
               img_size=12, patch_size=4)
    assert MODELS.build(dict(cfg, merge_num=4)).train_r_list == [4]
    with pytest.raises(ValueError, match='merge_num=5'):
        MODELS.build(dict(cfg, merge_num=5))


# ------------------------------------------------------------------ tools


def test_count_flops_uses_the_eval_schedule_and_keeps_the_mode():
    """With ``r_list=None`` a ToMe backbone is counted in eval mode, so its
    test schedule (here: no merging) applies; the mode is restored."""
    tool = _tool('get_flops')
    model = _backbone('ToMeVisionTransformer', merge_num=20,
                      test_merge_num=0)
    model.train()
    res = tool.count_flops(model, None, img_size=32)
    assert res['tokens'] == [65] * 5
    assert model.training


def test_benchmark_ratios_follow_their_definitions(monkeypatch):
    """``speedup`` is a ratio of medians, ``paired_speedup`` the median of
    per-round ratios, both base / setting (checked with a fake clock)."""
    tool = _tool('benchmark_speed')
    wall = {0: [2., 4., 6.], 4: [1., 1., 6.]}
    cpu = {0: [4., 4., 4.], 4: [1., 2., 2.]}
    clock = dict(wall=0., cpu=0.)

    def fake_forward_fn(model, r_list, prop_attn=False):
        key, calls = r_list[0], iter(range(3))

        def fn(x):
            i = next(calls)
            clock['wall'] += wall[key][i]
            clock['cpu'] += cpu[key][i]
        return fn

    monkeypatch.setattr(tool, 'forward_fn', fake_forward_fn)
    monkeypatch.setattr(
        tool, 'time',
        types.SimpleNamespace(perf_counter=lambda: clock['wall'],
                              process_time=lambda: clock['cpu']))
    model = _mm_vit()
    res = tool.run_benchmark(model, ['none', 'r4'], batch_size=2,
                             img_size=32, repeats=3, warmup=0,
                             progress=False)
    r4 = res['r4']
    assert r4['times_s'] == [1., 1., 6.]
    assert r4['median_s'] == 1. and r4['images_per_s'] == 2.
    assert r4['speedup'] == pytest.approx(4.)  # 4 / 1
    assert r4['paired_speedup'] == pytest.approx(2.)  # median(2, 4, 1)
    assert r4['cpu_speedup'] == pytest.approx(2.)  # 4 / 2
    assert res['none']['speedup'] == 1.


def test_benchmark_markdown_reports_tokens_out():
    tool = _tool('benchmark_speed')
    row = dict(median_s=0.5, images_per_s=4., speedup=1., cpu_speedup=1.)
    results = {'none': dict(row, r_list=[0, 0, 0, 0]),
               'merge20': dict(row, r_list=[8, 5, 4, 3])}
    meta = dict(arch='a', backend='mmpretrain', batch_size=2, img_size=32,
                command='c', repeats=1, warmup=0, num_tokens=65,
                env=dict(torch_threads=1))
    md = tool.format_markdown(results, meta)
    assert '| none | 0,0,0,0 | 65 |' in md
    assert '| merge20 | 8,5,4,3 | 45 |' in md


def test_gated_timm_attention_matches_stock():
    """timm's gated attention (``Attention(gated=True)``: a sigmoid gate on
    the attention output) is applied by the ToMe block: the unmerged
    forward equals the stock one."""
    from timm.layers import Attention
    model = _timm_vit().eval()
    for blk in model.blocks:
        blk.attn = Attention(32, num_heads=4, qkv_bias=True, gated=True)
    randomize_(model)
    x = _images()
    with torch.no_grad():
        plain = tome_timm_forward(model, x, [0] * 4).outs[0]
        ref = model.forward_head(model.forward_features(x), True)
        merged = tome_timm_forward(model, x, [6, 4, 4, 4]).outs[0]
    torch.testing.assert_close(plain, ref, rtol=1e-4, atol=1e-5)
    assert merged.shape == ref.shape
