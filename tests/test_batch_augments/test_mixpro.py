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


def test_classifier_applies_pal_with_the_training_forward():
    model, aug = build_bound(dict(type='MixPro', mask_patch_size=8))
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
    target = lam_area[:, None] * y + (1 - lam_area[:, None]) * \
        y[record.index]
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
