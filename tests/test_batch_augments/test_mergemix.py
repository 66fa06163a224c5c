import copy
from unittest.mock import patch

import numpy as np
import pytest
import torch
from mmengine.registry import init_default_scope
from mmpretrain.models.utils.batch_augments import RandomBatchAugment
from mmpretrain.registry import BATCH_AUGMENTS, MODELS

from mergemix_mm.models.batch_augments import mergemix_token_scores
from mergemix_mm.models.batch_augments.mergemix import rescale_lam
from mergemix_mm.models.tome import ToMeOutput, forward_with_attention, recover

init_default_scope('mmpretrain')

BACKBONE = dict(
    type='VisionTransformer',
    arch=dict(embed_dims=32, num_layers=4, num_heads=2,
              feedforward_channels=64),
    img_size=32, patch_size=4, out_type='cls_token')


def build_model(aug=None, backbone=BACKBONE, **kwargs):
    aug = aug or dict(type='MergeMix', attn_layer=2)
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='MergeMixClassifier', backbone=copy.deepcopy(backbone),
        head=dict(type='MixLabelClsHead', num_classes=10, in_channels=32),
        data_preprocessor=dict(num_classes=10),
        train_cfg=dict(augments=[aug]), **kwargs))


def get_aug(model):
    return model.data_preprocessor.batch_augments.augments[0]


def batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.eye(10)[torch.arange(n) % 10]
    return x, y


def test_scores_rows_sum_to_one_and_shapes():
    aug = get_aug(build_model())
    x, y = batch()
    mixed, scores = aug(x, y.long())
    assert mixed.shape == x.shape and scores.shape == y.shape
    assert scores.dtype == torch.float32
    torch.testing.assert_close(scores.sum(1), torch.ones(8))


@pytest.mark.parametrize('compat', [None, 'openmixup', 'llava'])
@pytest.mark.parametrize('mode', ['batch', 'elem'])
def test_label_weight_equals_kept_fraction_without_rescaling(compat, mode):
    aug = get_aug(build_model(dict(
        type='MergeMix', attn_layer=2, lam_scale=False,
        lam_reduction='sample', mode=mode, compat=compat)))
    x, _ = batch()
    mix = aug.build_mix(x)
    kept = mix['mask'].mean((1, 2, 3))
    torch.testing.assert_close(mix['lam'], kept, rtol=0, atol=1e-7)
    if compat != 'llava':  # exactly k = floor(lam * N) patches kept
        k = torch.floor(mix['lam_draw'] * 64)
        torch.testing.assert_close(kept * 64, k)
    # The mixed image really holds those pixels of the own image (and the
    # partner's elsewhere): replay the same draws through ``__call__``.
    np.random.seed(5)
    torch.manual_seed(5)
    mix = aug.build_mix(x)
    np.random.seed(5)
    torch.manual_seed(5)
    mixed, _ = aug.__class__.__call__(aug, x, torch.eye(10)[:8])
    own = mix['mask'].bool().expand_as(x)
    assert own.any() and not own.all()
    torch.testing.assert_close(mixed[own], x[own], rtol=0, atol=0)
    partner = x[mix['index']]
    torch.testing.assert_close(mixed[~own], partner[~own], rtol=0, atol=0)


def test_mask_is_constant_on_each_patch_and_binary():
    aug = get_aug(build_model())
    x, _ = batch()
    mask = aug.build_mix(x)['mask']
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    patches = mask.unfold(2, 4, 4).unfold(3, 4, 4)  # [B,1,8,8,4,4]
    flat = patches.flatten(-2)
    assert torch.all(flat.max(-1).values == flat.min(-1).values)


def test_mixed_pixels_come_from_own_image_where_mask_is_one():
    aug = get_aug(build_model(dict(type='MergeMix', attn_layer=2,
                                   lam_scale=False)))
    x, y = batch()
    np.random.seed(3)
    torch.manual_seed(3)
    mix = aug.build_mix(x)
    np.random.seed(3)
    torch.manual_seed(3)
    mixed, _ = aug(x, y)
    m = mix['mask']
    torch.testing.assert_close(mixed, m * x + (1 - m) * x[mix['index']])


@pytest.mark.parametrize('n', [2, 3, 5, 16])
def test_no_self_pairing(n):
    aug = get_aug(build_model())
    x, _ = batch(n)
    for _ in range(20):
        index = aug.build_mix(x)['index']
        assert not bool((index == torch.arange(n)).any())
        assert sorted(index.tolist()) == list(range(n))


def test_compat_openmixup_reproduces_official_index_space():
    model = build_model(dict(type='MergeMix', attn_layer=1, compat='openmixup',
                             merge_num=32))
    aug = get_aug(model)
    x, _ = batch()
    r_list = aug._schedule(4, 64, 1)
    with torch.no_grad():
        out = forward_with_attention(model.backbone, x, attn_layer=1,
                                     r_list=r_list, trace_source=True)
    expected = recover(out.attn[:, :, :, 0].sum(1), out.source[:, 1:])
    torch.testing.assert_close(mergemix_token_scores(out, 'openmixup'),
                               expected)
    # paper default: CLS row, heads averaged, map of the tokens entering l
    default = recover(out.attn[:, :, 0, :].mean(1), out.source_in[:, 1:])
    torch.testing.assert_close(mergemix_token_scores(out, None), default)
    assert not torch.equal(default.argsort(1), expected.argsort(1))


def test_default_and_openmixup_differ_on_constructed_case():
    # 1 CLS + 4 tokens; nothing merged before the block, 2 merged after.
    attn = torch.zeros(1, 1, 5, 5)
    attn[0, 0, 0] = torch.tensor([.1, .6, .1, .1, .1])   # CLS -> token 1
    attn[0, 0, :, 0] = torch.tensor([.1, .0, .0, .0, .9])  # token 4 -> CLS
    attn[0, 0, 0, 0] = .1
    source_in = torch.arange(5)[None]
    source_final = torch.tensor([[0, 1, 1, 2, 2]])  # final space: 3 tokens
    out = ToMeOutput(outs=(), attn=attn, source_in=source_in,
                     source=source_final, size=None, num_extra_tokens=1,
                     patch_resolution=(2, 2), tokens=None, token_counts=[])
    paper = mergemix_token_scores(out, None)
    official = mergemix_token_scores(out, 'openmixup')
    assert paper.argmax().item() == 0  # patch 0 (token 1) wins: CLS row
    # official: patch j reads row g_final(j) of the block's attention, col 0
    torch.testing.assert_close(official,
                               torch.tensor([[0., 0., 0., 0.]]))
    assert not torch.equal(paper, official)


def test_rescaling_is_mask_independent_noise():
    lam_mask = torch.full((100, ), 0.3)
    torch.manual_seed(0)
    a = rescale_lam(lam_mask, mu=0.5)
    torch.manual_seed(0)
    b = rescale_lam(torch.full((100, ), 0.9), mu=0.25)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    assert a.min() == 0 and a.max() < 1
    assert torch.all(rescale_lam(torch.zeros(4), 0.5) == 0)


def test_lam_reduction_batch_gives_every_row_the_mean():
    aug = get_aug(build_model(dict(type='MergeMix', attn_layer=2,
                                   mode='elem', lam_scale=False)))
    x, _ = batch()
    mix = aug.build_mix(x)
    torch.testing.assert_close(mix['lam'], mix['lam_mask'].mean().expand(8))


def test_lam_margin_uses_linear_mixup():
    aug = get_aug(build_model(dict(type='MergeMix', attn_layer=2,
                                   lam_margin=0.3, lam_scale=False)))
    x, y = batch()
    with patch('numpy.random.beta', return_value=np.array([0.1])):
        mix = aug.build_mix(x)
        mixed, scores = aug(x, y)
    assert mix['linear'] and mix['mask'] is None
    torch.testing.assert_close(mix['lam'], torch.full((8, ), 0.1))
    rec = aug.pop_record()
    torch.testing.assert_close(mixed, 0.1 * x + 0.9 * x[rec.index])


def test_mask_leaked_keeps_least_attended():
    x, _ = batch()
    a = get_aug(build_model(dict(type='MergeMix', attn_layer=2,
                                 lam_scale=False)))
    b = get_aug(build_model(dict(type='MergeMix', attn_layer=2,
                                 lam_scale=False, mask_leaked=True)))
    with patch('numpy.random.beta', return_value=np.array([0.25])):
        ma, mb = a.build_mix(x), b.build_mix(x)
    torch.testing.assert_close(ma['patch_mask'] + mb['patch_mask'],
                               torch.ones_like(ma['patch_mask']))
    torch.testing.assert_close(mb['lam'], torch.full((8, ), 0.75))


def test_probs_switch_with_mixup():
    model = build_model()
    mm = get_aug(model)
    rba = RandomBatchAugment(
        augments=[mm, dict(type='Mixup', alpha=0.8)], probs=[0.5, 0.5])
    x, y = batch()
    with patch('numpy.random.choice', return_value=0):
        rba(x, y)
    assert mm.pop_record() is not None
    with patch('numpy.random.choice', return_value=1):
        rba(x, y)
    assert mm.pop_record() is None


def test_batch_of_one_passes_through_with_warning():
    aug = get_aug(build_model())
    x, y = batch(1)
    with pytest.warns(UserWarning, match='batch of 1'):
        import mergemix_mm.models.batch_augments.base as base
        base._WARNED.discard('MergeMix')
        mixed, scores = aug(x, y)
    assert mixed is x
    torch.testing.assert_close(scores, y)


def test_a_featmap_backbone_works_with_the_mask_pass():
    """The mask pass stops at attn_layer and builds no backbone outputs,
    so a stock ViT with out_type='featmap' (and a pooling neck) mixes
    with merging like any other: the same mixed batch as out_type='raw'."""
    results = []
    for out_type in ('featmap', 'raw'):
        model = build_model(backbone=dict(BACKBONE, out_type=out_type),
                            neck=dict(type='GlobalAveragePooling'))
        np.random.seed(1)
        torch.manual_seed(1)
        results.append(get_aug(model)(*batch()))
    (mixed, scores), (ref_mixed, ref_scores) = results
    torch.testing.assert_close(mixed, ref_mixed)
    torch.testing.assert_close(scores, ref_scores)
    assert not torch.equal(mixed, batch()[0])


def test_nan_inputs_raise_naming_samples():
    aug = get_aug(build_model())
    x, y = batch()
    x[3, 0, 0, 0] = float('nan')
    with pytest.raises(ValueError, match=r'NaN or Inf \(samples \[3\]'):
        aug(x, y)


@pytest.mark.parametrize('kwargs, match', [
    (dict(alpha=0), 'alpha=0'),
    (dict(alpha=-1.0), 'alpha=-1.0'),
    (dict(lam_reduction='mean'), 'lam_reduction'),
    (dict(mode='pair'), 'mode'),
    (dict(compat='official'), 'compat'),
    (dict(merge_num=-2), 'merge_num'),
    (dict(lam_margin=0.6), 'lam_margin'),
    (dict(alpha=float('nan')), 'alpha=nan'),
    (dict(alpha=float('inf')), 'alpha=inf'),
    (dict(lam_margin=float('nan')), 'lam_margin=nan'),
    (dict(lam_margin=0.1, mode='elem'), "lam_margin=0.1 needs mode='batch'"),
    # schedule options: refused when built, naming them (not merge_num at
    # the first batch)
    (dict(schedule_compat='foo'), "schedule_compat='foo'"),
    (dict(merge_inflect=5.0), 'merge_inflect=5.0'),
    (dict(merge_inflect=-1.5), 'merge_inflect=-1.5'),
])
def test_bad_hyper_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BATCH_AUGMENTS.build(dict(type='MergeMix', **kwargs))


@pytest.mark.parametrize('kwargs, match', [
    (dict(alpha='1'), "alpha='1'"),
    (dict(alpha=True), 'alpha=True'),
    (dict(attn_layer=1.0), 'attn_layer=1.0'),
    (dict(merge_num=2.5), 'merge_num=2.5'),
    (dict(lam_margin='0.1'), "lam_margin='0.1'"),
])
def test_hyper_parameters_of_wrong_type(kwargs, match):
    with pytest.raises(TypeError, match=match):
        BATCH_AUGMENTS.build(dict(type='MergeMix', **kwargs))


def test_numpy_integers_are_accepted():
    aug = BATCH_AUGMENTS.build(
        dict(type='MergeMix', attn_layer=np.int64(-2), merge_num=np.int64(4)))
    assert type(aug.attn_layer) is int and aug.attn_layer == -2
    assert type(aug.merge_num) is int and aug.merge_num == 4


def test_attn_layer_out_of_range():
    aug = get_aug(build_model(dict(type='MergeMix', attn_layer=4)))
    with pytest.raises(ValueError, match='attn_layer=4 is out of range'):
        aug(*batch())


def test_merge_num_too_large():
    aug = get_aug(build_model(dict(type='MergeMix', attn_layer=1,
                                   merge_num=200)))
    with pytest.raises(ValueError, match='merge_num=200'):
        aug(*batch())


def test_input_size_not_divisible_by_patch():
    aug = get_aug(build_model())
    x = torch.randn(4, 3, 30, 30)
    with pytest.raises(ValueError, match='not divisible'):
        aug(x, torch.eye(10)[:4])


def test_non_vit_backbone():
    model = MODELS.build(dict(
        type='MergeMixClassifier',
        backbone=dict(type='ResNet', depth=18),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=512),
        data_preprocessor=dict(num_classes=10),
        train_cfg=dict(augments=[dict(type='MergeMix')])))
    with pytest.raises(ValueError, match='ResNet'):
        get_aug(model)(*batch())


@pytest.mark.parametrize('compat', [None, 'openmixup', 'llava'])
def test_backbone_without_class_token(compat):
    """MergeMix reads the CLS token's attention; a ViT without one (token 0
    is a patch) is refused instead of scoring with a patch's attention."""
    backbone = dict(BACKBONE, with_cls_token=False, out_type='avg_featmap')
    aug = get_aug(build_model(dict(type='MergeMix', attn_layer=2,
                                   compat=compat), backbone=backbone))
    with pytest.raises(ValueError, match='no class token'):
        aug(*batch())


def test_unbound_augment_error():
    aug = BATCH_AUGMENTS.build(dict(type='MergeMix'))
    with pytest.raises(RuntimeError, match='not bound'):
        aug(*batch())


@pytest.mark.parametrize('compat,blocks', [(None, [0, 1]),
                                           ('llava', [0, 1]),
                                           ('openmixup', [0, 1, 2, 3])])
def test_mask_pass_stops_after_attn_layer(compat, blocks):
    """Only 'openmixup' reads the final source map; otherwise the no-grad
    mask pass runs no block after ``attn_layer``, with the same mask as a
    full pass."""
    model = build_model(dict(type='MergeMix', attn_layer=1, compat=compat,
                             lam_scale=False))
    aug = get_aug(model)
    calls = []
    hooks = [
        layer.ln1.register_forward_pre_hook(
            lambda m, a, i=i: calls.append(i))
        for i, layer in enumerate(model.backbone.layers)
    ]
    x, _ = batch()
    model.eval()  # no drop-path: the two passes below are deterministic
    np.random.seed(0)
    mix = aug.build_mix(x)
    for h in hooks:
        h.remove()
    assert calls == blocks
    full = forward_with_attention(
        model.backbone, x, attn_layer=1, r_list=aug._schedule(4, 64, 1),
        trace_source=True)
    if compat is None:
        np.random.seed(0)
        lam = float(np.random.beta(1.0, 1.0))
        scores = mergemix_token_scores(full, None)
        k = int(np.floor(lam * 64))
        top = scores.argsort(dim=1, descending=True, stable=True)[:, :k]
        ref = torch.zeros(8, 64).scatter_(1, top, 1.0).reshape(8, 8, 8)
        assert torch.equal(mix['patch_mask'], ref)


def test_mode_elem_draws_one_lam_per_sample():
    """``mode='elem'`` draws a lambda per sample, ``'batch'`` one in all."""
    x, _ = batch()
    draws = {}
    for mode in ('batch', 'elem'):
        aug = get_aug(build_model(dict(type='MergeMix', attn_layer=2,
                                       lam_scale=False, mode=mode)))
        np.random.seed(0)
        draws[mode] = aug.build_mix(x)['lam_draw']
        assert draws[mode].shape == (8, )
    assert draws['batch'].unique().numel() == 1
    assert draws['elem'].unique().numel() == 8
    np.random.seed(0)
    ref = torch.as_tensor(np.random.beta(1.0, 1.0, size=8),
                          dtype=torch.float32)
    torch.testing.assert_close(draws['elem'], ref)


@pytest.mark.parametrize('mode', ['batch', 'elem'])
def test_lambda_is_drawn_from_beta_alpha(mode):
    """lambda ~ Beta(alpha, alpha) with the configured alpha (every other
    test uses alpha=1, where a hard-coded Beta(1, 1) would also pass)."""
    x, _ = batch()
    aug = get_aug(build_model(dict(type='MergeMix', attn_layer=2, alpha=0.2,
                                   lam_scale=False, mode=mode)))
    np.random.seed(3)
    draw = aug.build_mix(x)['lam_draw']
    np.random.seed(3)
    ref = np.random.beta(0.2, 0.2, size=8 if mode == 'elem' else None)
    ref = torch.as_tensor(ref, dtype=torch.float32).expand(8)
    torch.testing.assert_close(draw, ref)


@pytest.mark.parametrize('attn_eval_mode', [True, False])
def test_attn_eval_mode_turns_off_drop_path_in_mask_pass(attn_eval_mode):
    """With ``attn_eval_mode`` the mask pass ignores dropout / drop-path, so
    the mask does not depend on the torch seed; by default (train mode) it
    does. The model is left in training mode either way."""
    backbone = dict(BACKBONE, drop_rate=0.5, drop_path_rate=0.5)
    model = build_model(dict(type='MergeMix', attn_layer=3, lam_scale=False,
                             attn_eval_mode=attn_eval_mode),
                        backbone=backbone)
    aug = get_aug(model)
    x, _ = batch()
    masks = []
    with patch('numpy.random.beta', return_value=np.array([0.5])):
        for seed in (1, 2):
            torch.manual_seed(seed)
            masks.append(aug.build_mix(x)['patch_mask'])
            assert model.training and model.backbone.training
    assert masks[0].sum() == masks[1].sum() == 8 * 32
    assert torch.equal(masks[0], masks[1]) == attn_eval_mode
    if attn_eval_mode:  # the same mask as a pass of the model in eval mode
        model.eval()
        with patch('numpy.random.beta', return_value=np.array([0.5])):
            ref = aug.build_mix(x)['patch_mask']
        assert torch.equal(masks[0], ref)


def test_lam_margin_mixes_image_with_drawn_lam_when_rescaling():
    """The linear branch mixes the pixels with the drawn lambda while the
    label uses the re-scaled weight (ALGORITHM.md A13)."""
    aug = get_aug(build_model(dict(type='MergeMix', attn_layer=2,
                                   lam_margin=0.3, lam_scale=True)))
    x, y = batch()
    torch.manual_seed(0)
    with patch('numpy.random.beta', return_value=np.array([0.1])):
        mixed, scores = aug(x, y)
    rec = aug.pop_record()
    assert rec.mask is None
    torch.testing.assert_close(mixed, 0.1 * x + 0.9 * x[rec.index])
    # the label weight is the re-scaled one, not the drawn 0.1
    assert not torch.allclose(rec.lam, torch.full((8, ), 0.1))
    torch.testing.assert_close(rec.lam, rec.lam[:1].expand(8))
    lam = rec.lam[:, None]
    torch.testing.assert_close(scores, lam * y + (1 - lam) * y[rec.index])


def test_lam_margin_upper_bound_uses_linear_mixup():
    """``lam >= 1 - lam_margin`` also takes the linear Mixup branch."""
    aug = get_aug(build_model(dict(type='MergeMix', attn_layer=2,
                                   lam_margin=0.3, lam_scale=False)))
    x, y = batch()
    with patch('numpy.random.beta', return_value=np.array([0.9])):
        mix = aug.build_mix(x)
        mixed, _ = aug(x, y)
    assert mix['linear'] and mix['mask'] is None
    torch.testing.assert_close(mix['lam'], torch.full((8, ), 0.9))
    rec = aug.pop_record()
    torch.testing.assert_close(mixed, 0.9 * x + 0.1 * x[rec.index])
    # inside the margin the mask is used
    with patch('numpy.random.beta', return_value=np.array([0.6])):
        assert not aug.build_mix(x)['linear']


def test_default_merge_num_is_half_the_patch_tokens():
    """``merge_num=None`` merges half of the patch tokens in the mask pass
    (the paper's 98 of 196)."""
    aug = get_aug(build_model(dict(type='MergeMix', attn_layer=2)))
    assert aug.merge_num is None
    x, y = batch()
    aug(x, y)  # the schedule of the 8x8 grid of the 32x32 inputs is cached
    assert list(aug._schedules) == [(4, 64, 1)]
    assert sum(aug._schedules[(4, 64, 1)]) == 32
    assert sum(aug._schedule(4, 16, 1)) == 8


def test_mask_leaked_llava_keeps_complement():
    """Under ``compat='llava'`` ``mask_leaked`` also inverts the expanded
    merged-space mask: the two patch masks are complementary."""
    x, _ = batch()
    cfg = dict(type='MergeMix', attn_layer=2, lam_scale=False,
               compat='llava')
    a = get_aug(build_model(cfg))
    b = get_aug(build_model(dict(cfg, mask_leaked=True)))
    with patch('numpy.random.beta', return_value=np.array([0.25])):
        ma, mb = a.build_mix(x), b.build_mix(x)
    assert 0 < ma['patch_mask'].sum() < ma['patch_mask'].numel()
    torch.testing.assert_close(ma['patch_mask'] + mb['patch_mask'],
                               torch.ones_like(ma['patch_mask']))
    torch.testing.assert_close(mb['lam_mask'], 1 - ma['lam_mask'])


@pytest.mark.parametrize('lam_margin', [-1.0, 0.49])
def test_lam_scale_rescores_the_kept_fraction_on_both_paths(
        monkeypatch, lam_margin):
    """``lam_scale=True`` (the published CIFAR recipe) re-scales the label
    weights from the kept fraction on the mask path and from lambda on the
    linear (``lam_margin``) path; the emitted weights are its output."""
    import mergemix_mm.models.batch_augments.mergemix as mm_module
    calls = []

    def spy(lam_mask, mu, tau=1e-5):
        out = rescale_lam(lam_mask, mu, tau)
        calls.append((lam_mask.clone(), mu, out))
        return out

    monkeypatch.setattr(mm_module, 'rescale_lam', spy)
    x, _ = batch()
    aug = get_aug(build_model(dict(type='MergeMix', attn_layer=2,
                                   merge_num=8, lam_scale=True,
                                   lam_reduction='sample',
                                   lam_margin=lam_margin)))
    np.random.seed(0)  # lambda 0.449: half of the patches kept
    mix = aug.build_mix(x)
    assert mix['linear'] == (lam_margin > 0)
    (lam_mask, mu, out), = calls
    torch.testing.assert_close(lam_mask, mix['lam_mask'].float())
    assert mu == 8 / 64
    torch.testing.assert_close(mix['lam'], out)
    assert not torch.allclose(mix['lam'], mix['lam_mask'].float())


def test_llava_mask_keeps_the_most_attended_merged_tokens():
    """``compat='llava'``: the top ``floor(lam * n)`` merged tokens by the
    CLS row (heads summed) are kept, expanded through the source map of the
    tokens entering the block (the least attended ones, or another query
    row, used to pass)."""
    model = build_model(dict(type='MergeMix', attn_layer=1, compat='llava',
                             lam_scale=False))
    aug = get_aug(model)
    x, _ = batch()
    model.eval()  # no drop-path: the reference pass is the same
    np.random.seed(0)
    mix = aug.build_mix(x)
    out = forward_with_attention(
        model.backbone, x, attn_layer=1, r_list=aug._schedule(4, 64, 1),
        trace_source=True, stop_at_attn_layer=True)
    cls_row = out.attn[:, :, 0, 1:].float().sum(1)  # [B, merged patches]
    np.random.seed(0)
    lam = float(np.random.beta(1.0, 1.0))
    k = int(np.floor(lam * cls_row.shape[1]))
    assert 0 < k < cls_row.shape[1]
    top = cls_row.argsort(dim=1, descending=True, stable=True)[:, :k]
    keep = torch.zeros_like(cls_row).scatter_(1, top, 1.0)
    ref = recover(keep, out.source_in[:, 1:] - 1)
    torch.testing.assert_close(mix['patch_mask'], ref.reshape(8, 8, 8))
