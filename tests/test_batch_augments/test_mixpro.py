import math
from unittest.mock import patch

import numpy as np
import pytest
import torch
from baseline_utils import build_bound, check_contract, make_batch, seed_all
from mmpretrain.structures import DataSample

from mergemix_mm.models.batch_augments import MixPro
from mergemix_mm.models.batch_augments.attention_utils import \
    cls_attention_grid
from mergemix_mm.models.batch_augments.mixpro import \
    progressive_attention_lam
from mergemix_mm.models.tome import forward_with_attention


def test_contract_with_bound_model():
    _, aug = build_bound(dict(type='MixPro', mask_patch_size=8))
    check_contract(aug, *make_batch())


@pytest.mark.parametrize('seed', range(4))
def test_maskmix_is_a_grid_of_cells_with_ceil_lambda_count(seed):
    _, aug = build_bound(dict(type='MixPro', mask_patch_size=8))
    x, _ = make_batch(5)
    seed_all(seed)
    plan = aug.build_mix(x)
    mask, cells = plan['mask'], plan['cells']
    assert cells.shape == (5, 4, 4)
    # constant inside every 8x8 cell
    blocks = mask[:, 0].reshape(5, 4, 8, 4, 8)
    assert bool((blocks.amax((2, 4)) == blocks.amin((2, 4))).all())
    counts = cells.flatten(1).sum(1)
    assert len(set(counts.tolist())) == 1  # one lambda per batch
    torch.testing.assert_close(plan['lam'], counts / 16)


def test_cells_are_cropped_when_the_image_is_not_a_multiple():
    _, aug = build_bound(dict(type='MixPro', mask_patch_size=12),
                         backbone=dict(
                             type='VisionTransformer',
                             arch=dict(embed_dims=32, num_layers=2,
                                       num_heads=2, feedforward_channels=64),
                             img_size=32, patch_size=4,
                             out_type='cls_token'))
    x, _ = make_batch(3)
    seed_all(0)
    plan = aug.build_mix(x)
    assert plan['cells'].shape[-1] == math.ceil(32 / 12)
    torch.testing.assert_close(plan['lam'], plan['mask'].flatten(1).mean(1))


def test_progressive_attention_label_formula():
    attn = torch.tensor([[[0.1, 0.2], [0.3, 0.4]]])
    keep = torch.zeros(1, 1, 8, 8)
    keep[..., 4:, :] = 1  # own cells = bottom row of patches
    lam_area = torch.tensor([0.5])
    full = progressive_attention_lam(attn, keep, lam_area, torch.ones(1))
    none = progressive_attention_lam(attn, keep, lam_area, torch.zeros(1))
    half = progressive_attention_lam(attn, keep, lam_area,
                                     torch.tensor([0.5]))
    assert full.item() == pytest.approx(0.7)
    assert none.item() == pytest.approx(0.5)
    assert half.item() == pytest.approx(0.6)


@pytest.mark.parametrize('eps', [None, 0.0, 0.3])
def test_classifier_applies_pal_with_the_training_forward(eps):
    """PAL weights from the training forward's attention and a similarity
    against the area-mixed target with smoothed labels (0.1 by default, as
    the official code's ``mix_targets``)."""
    cfg = dict(type='MixPro', mask_patch_size=8)
    if eps is not None:
        cfg['similarity_smoothing'] = eps
    model, aug = build_bound(cfg)
    model.eval()
    x, y = make_batch(4)
    seed_all(0)
    mixed, _ = aug(x, y)
    record = aug.pop_record()
    lam_area = record.lam.clone()
    aug._set_record(record)
    seen = {}
    orig = model.head.loss

    def spy(feats, data_samples):
        seen['scores'] = torch.stack([d.gt_score for d in data_samples])
        return orig(feats, data_samples)

    with patch.object(model.head, 'loss', side_effect=spy):
        model.loss(mixed, [DataSample().set_gt_label(i) for i in range(4)])
    out = forward_with_attention(model.backbone, mixed, attn_layer=-1)
    logits = model.head(out.outs)
    ys = _smoothed(y, 0.1 if eps is None else eps)
    target = lam_area[:, None] * ys + (1 - lam_area[:, None]) * \
        ys[record.index]
    sim = torch.cosine_similarity(target, logits.softmax(-1), dim=1)
    lam = progressive_attention_lam(cls_attention_grid(out), record.mask,
                                    lam_area, sim)
    expected = lam[:, None] * y + (1 - lam[:, None]) * y[record.index]
    torch.testing.assert_close(seen['scores'], expected)


def test_area_only_mode_leaves_no_record():
    _, aug = build_bound(dict(type='MixPro', mask_patch_size=8,
                              attention_label=False))
    aug(*make_batch(3))
    assert aug.pop_record() is None


def test_cell_size_must_fit_the_patches_and_image():
    x, y = make_batch(2)
    _, aug = build_bound(dict(type='MixPro', mask_patch_size=6))
    with pytest.raises(ValueError, match='multiple of the backbone'):
        aug(x, y)
    _, aug = build_bound(dict(type='MixPro', mask_patch_size=64))
    with pytest.raises(ValueError, match='larger than the 32x32'):
        aug(x, y)


@pytest.mark.parametrize('kwargs, err', [
    (dict(alpha=0), ValueError),
    (dict(mask_patch_size=0), ValueError),
    (dict(mask_patch_size=8.0), TypeError),
    (dict(attention_label='yes'), TypeError),
])
def test_bad_hyper_parameters(kwargs, err):
    with pytest.raises(err, match=list(kwargs)[0]):
        MixPro(**kwargs)


@pytest.mark.parametrize('seed', range(4))
def test_own_cell_count_is_the_ceil_of_lambda_cells(seed):
    _, aug = build_bound(dict(type='MixPro', mask_patch_size=8))
    x, _ = make_batch(3)
    seed_all(seed)
    lam = np.random.beta(1.0, 1.0)
    seed_all(seed)
    plan = aug.build_mix(x)
    counts = plan['cells'].flatten(1).sum(1)
    torch.testing.assert_close(
        counts, torch.full((3, ), float(math.ceil(lam * 16))))


def test_similarity_factor_is_detached_from_the_logits():
    model, aug = build_bound(dict(type='MixPro', mask_patch_size=8))
    x, y = make_batch(4)
    seed_all(0)
    mixed, _ = aug(x, y)
    record = aug.pop_record()
    with torch.no_grad():
        out = forward_with_attention(model.backbone, mixed, attn_layer=-1)
    logits = torch.randn(4, 10, requires_grad=True)
    lam = aug.attention_lam(out, logits, record)
    assert not lam.requires_grad


# ---------------------------------------------------------------------------
# compat='openmixup' (OpenMixup's port, commit 37e1372)


def _hand_clean_attention(model, x):
    """OpenMixup's map, by hand: the last block's softmax attention of a
    plain backbone forward, CLS query row over the patch keys, mean over
    heads (``attn[:, :, 0, 1:].mean(1)``), ``[B, N]``."""
    attn_mod = model.backbone.layers[-1].attn
    seen = {}
    handle = attn_mod.register_forward_pre_hook(
        lambda mod, args: seen.setdefault('x', args[0]))
    try:
        with torch.no_grad():
            model.backbone(x)
    finally:
        handle.remove()
    t = seen['x']
    B, N, _ = t.shape
    h, d = attn_mod.num_heads, attn_mod.head_dims
    qkv = attn_mod.qkv(t).reshape(B, N, 3, h, d).permute(2, 0, 3, 1, 4)
    attn = (qkv[0] @ qkv[1].transpose(-2, -1) * d**-0.5).softmax(-1)
    return attn[:, :, 0, 1:].mean(1).detach()


def _smoothed(y, eps):
    """OpenMixup's smoothed one-hot rows: on ``1 - eps + eps / K``, off
    ``eps / K``."""
    off = eps / y.shape[1]
    return torch.where(y > 0, 1 - eps + off, off)


def _sharpen(model):
    """Peaky attention and predictions, so that PAL moves the weights far
    from the area (a random tiny ViT attends almost uniformly)."""
    with torch.no_grad():
        for layer in model.backbone.layers:
            layer.attn.qkv.weight.mul_(6)
        model.backbone.cls_token.normal_(0, 1)
        model.head.layers.head.weight.mul_(30)


def test_openmixup_compat_reproduces_openmixups_label_weights():
    """PAL from a no-grad pass on the clean batch, a 0.1-smoothed target,
    the cell-count area and the batch mean of the per-sample weights."""
    model, aug = build_bound(
        dict(type='MixPro', mask_patch_size=8, compat='openmixup'))
    _sharpen(model)
    model.train()  # no dropout in the tiny ViT: deterministic forwards
    x, y = make_batch(6)
    seed_all(3)
    mixed, area_scores = aug(x, y)
    record = aug.pop_record()
    index, mask = record.index, record.mask
    cells = mask[:, 0, ::8, ::8].flatten(1)  # 4x4 cells of 8 px
    lam_area = cells.mean(1)
    torch.testing.assert_close(record.lam, lam_area)
    w = lam_area[:, None]
    torch.testing.assert_close(area_scores, w * y + (1 - w) * y[index])

    seen = {}
    orig = model.head.loss

    def spy(feats, data_samples):
        seen['scores'] = torch.stack([d.gt_score for d in data_samples])
        return orig(feats, data_samples)

    aug._set_record(record)
    with patch.object(model.head, 'loss', side_effect=spy):
        model.loss(mixed, [DataSample().set_gt_label(i) for i in range(6)])

    # by hand, OpenMixup's formulas
    own = mask[:, 0, ::4, ::4].flatten(1)  # own patches, row-major
    with torch.no_grad():
        prob = model.head(model.backbone(mixed)).softmax(-1)

    def expected(images, eps, batch_mean):
        attn = _hand_clean_attention(model, images)  # [6, 64]
        lam_attn = (own * attn).sum(1) / attn.sum(1)
        ys = _smoothed(y, eps)
        target = lam_area[:, None] * ys + (1 - lam_area[:, None]) * ys[index]
        sim = torch.cosine_similarity(target, prob, dim=1)
        lam = sim * lam_attn + (1 - sim) * lam_area
        lam_y = lam.mean().expand(6) if batch_mean else lam
        return lam, lam_y[:, None] * y + (1 - lam_y[:, None]) * y[index]

    lam, scores = expected(x, 0.1, True)
    torch.testing.assert_close(seen['scores'], scores, atol=1e-4, rtol=0)
    torch.testing.assert_close(record.extra['lam_pal'], lam, atol=1e-4,
                               rtol=0)
    torch.testing.assert_close(record.lam, lam.mean().expand(6), atol=1e-4,
                               rtol=0)
    # the check is sharp: the mixed image's attention, an unsmoothed target
    # or per-sample weights all give other targets
    for alt in (expected(mixed, 0.1, True), expected(x, 0.0, True),
                expected(x, 0.1, False)):
        assert float((alt[1] - seen['scores']).abs().max()) > 1e-3


def test_openmixup_compat_runs_one_no_grad_pass_on_the_clean_batch():
    seen = []

    def hook(mod, args):
        seen.append((mod.training, torch.is_grad_enabled(), args[0].clone()))

    x, y = make_batch(4)
    for compat, passes in ((None, 0), ('openmixup', 1)):
        model, aug = build_bound(
            dict(type='MixPro', mask_patch_size=8, compat=compat))
        model.train()
        seen.clear()
        handle = model.backbone.patch_embed.register_forward_pre_hook(hook)
        try:
            seed_all(0)
            aug(x, y)
        finally:
            handle.remove()
        assert len(seen) == passes  # the default path adds no forward
    training, grad, images = seen[0]
    assert training and not grad
    assert torch.equal(images, x)  # the clean batch, before mixing


def test_openmixup_record_without_the_map_reruns_the_clean_pass():
    """A record built by hand (as the mix visualiser does) gets the same
    weights: the clean pass runs on ``record.clean_inputs``."""
    from mergemix_mm.models.batch_augments.base import MixRecord
    model, aug = build_bound(
        dict(type='MixPro', mask_patch_size=8, compat='openmixup'))
    _sharpen(model)
    x, y = make_batch(5)
    seed_all(2)
    mixed, _ = aug(x, y)
    full = aug.pop_record()
    bare = MixRecord(source=aug, clean_inputs=x, clean_scores=y.float(),
                     index=full.index, lam=full.lam.clone(), mask=full.mask)
    _, want = aug.forward_and_rescore(model, mixed, full)
    _, got = aug.forward_and_rescore(model, mixed, bare)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(bare.extra['lam_pal'], full.extra['lam_pal'])


def test_openmixup_area_is_the_cell_count_share():
    # 12 px cells on 32 px images: 3x3 cells, the last row / column cropped
    # to 8 px, so cell count and visible area differ
    backbone = dict(
        type='VisionTransformer',
        arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                  feedforward_channels=64),
        img_size=32, patch_size=4, out_type='cls_token')
    x, y = make_batch(3)
    plans = {}
    for compat in (None, 'openmixup'):
        _, aug = build_bound(dict(type='MixPro', mask_patch_size=12,
                                  compat=compat), backbone=backbone)
        seed_all(5)
        plans[compat] = aug.build_mix(x)
    cells = plans['openmixup']['cells'].flatten(1)
    torch.testing.assert_close(plans['openmixup']['lam'], cells.sum(1) / 9)
    torch.testing.assert_close(plans[None]['lam'],
                               plans[None]['mask'].flatten(1).mean(1))
    torch.testing.assert_close(plans[None]['mask'], plans['openmixup']['mask'])
    assert not torch.allclose(plans[None]['lam'], plans['openmixup']['lam'])


def test_openmixup_partner_may_be_the_sample_itself():
    x, _ = make_batch(4)

    def identity(n, *args, **kwargs):
        return torch.arange(n)

    for compat in (None, 'openmixup'):
        _, aug = build_bound(
            dict(type='MixPro', mask_patch_size=8, compat=compat))
        seed_all(0)
        with patch('torch.randperm', side_effect=identity):
            index = aug.build_mix(x)['index']
        fixed = index == torch.arange(4)
        if compat is None:
            assert not bool(fixed.any())  # a derangement
        else:
            assert bool(fixed.all())  # randperm as drawn


def test_openmixup_batch_of_one_passes_through_without_a_pass():
    model, aug = build_bound(
        dict(type='MixPro', mask_patch_size=8, compat='openmixup'))
    calls = []
    handle = model.backbone.patch_embed.register_forward_pre_hook(
        lambda mod, args: calls.append(1))
    x, y = make_batch(1)
    try:
        out, scores = aug(x, y)
    finally:
        handle.remove()
    assert out is x and torch.equal(scores, y.float())
    assert aug.pop_record() is None and not calls


def test_openmixup_area_only_mode_runs_no_pass():
    model, aug = build_bound(dict(type='MixPro', mask_patch_size=8,
                                  compat='openmixup', attention_label=False))
    calls = []
    handle = model.backbone.patch_embed.register_forward_pre_hook(
        lambda mod, args: calls.append(1))
    try:
        aug(*make_batch(3))
    finally:
        handle.remove()
    assert aug.pop_record() is None and not calls


def test_unknown_compat_is_refused():
    with pytest.raises(ValueError, match='compat'):
        MixPro(compat='official')


def test_openmixup_training_step_runs_the_clean_pass_once():
    """Mixing and re-scoring a batch: one no-grad pass on the clean batch
    (its map kept in the record) and the training forward, nothing more;
    the area weights stay in ``lam_area``."""
    model, aug = build_bound(
        dict(type='MixPro', mask_patch_size=8, compat='openmixup'))
    grad_of_passes = []
    handle = model.backbone.patch_embed.register_forward_pre_hook(
        lambda mod, args: grad_of_passes.append(torch.is_grad_enabled()))
    x, y = make_batch(4)
    try:
        seed_all(0)
        mixed, _ = aug(x, y)
        record = aug.pop_record()
        assert 'clean_attn' in record.extra
        area = record.mask[:, 0, ::8, ::8].flatten(1).mean(1)  # 4x4 cells
        aug.forward_and_rescore(model, mixed, record)
    finally:
        handle.remove()
    assert grad_of_passes == [False, True]
    torch.testing.assert_close(record.extra['lam_area'], area)
