from unittest.mock import patch

import pytest
import torch
from baseline_utils import build_bound, check_contract, make_batch, seed_all
from mmpretrain.structures import DataSample

from mergemix_mm.models.batch_augments import TransMix
from mergemix_mm.models.batch_augments.attention_utils import \
    cls_attention_grid
from mergemix_mm.models.batch_augments.transmix import transmix_lam
from mergemix_mm.models.tome import forward_with_attention


def test_contract_with_bound_model():
    _, aug = build_bound(dict(type='TransMix'))
    check_contract(aug, *make_batch())


def test_lambda_mixes_area_and_attention_as_specified():
    # 2x2 patch grid on a 4x4 image; the partner box covers exactly the
    # top-left patch
    attn = torch.tensor([[[0.1, 0.2], [0.3, 0.4]]])
    keep = torch.ones(1, 1, 4, 4)
    keep[..., :2, :2] = 0
    lam_area = torch.tensor([0.75])
    # w_in = 0.1, w_out = 0.9 -> lam_attn = 0.9
    assert transmix_lam(attn, keep, lam_area, 0.0).item() == pytest.approx(
        0.9)
    assert transmix_lam(attn, keep, lam_area, 1.0).item() == pytest.approx(
        0.75)
    assert transmix_lam(attn, keep, lam_area, 0.5).item() == pytest.approx(
        0.5 * 0.75 + 0.5 * 0.9)
    # attention that does not sum to one is normalised by w_in + w_out
    assert transmix_lam(2 * attn, keep, lam_area, 0.0).item() == \
        pytest.approx(0.9)


def test_box_is_downsampled_by_nearest_top_left_pixel():
    attn = torch.tensor([[[0.1, 0.2], [0.3, 0.4]]])
    keep = torch.ones(1, 1, 4, 4)
    keep[..., 1:4, 1:4] = 0  # misses the top-left pixel of patch (0, 0),
    # hits the top-left pixel of the other three patches only at (1, 1)...
    # patch top-left pixels: (0,0), (0,2), (2,0), (2,2) -> only (2,2) pasted
    lam = transmix_lam(attn, keep, torch.tensor([0.5]), 0.0)
    assert lam.item() == pytest.approx(0.6)


def test_call_is_cutmix_and_leaves_a_record():
    _, aug = build_bound(dict(type='TransMix', alpha=1.0))
    x, y = make_batch(4)
    seed_all(0)
    mixed, scores = aug(x, y)
    rec = aug.pop_record()
    assert rec.source is aug and rec.clean_inputs is x
    y1, y2, x1, x2 = rec.extra['box']
    assert (y2 - y1) * (x2 - x1) > 0
    torch.testing.assert_close(mixed[..., y1:y2, x1:x2],
                               x[rec.index][..., y1:y2, x1:x2])
    torch.testing.assert_close(rec.lam, torch.full(
        (4, ), 1 - (y2 - y1) * (x2 - x1) / 32**2))
    torch.testing.assert_close(
        scores, rec.lam[:, None] * y + (1 - rec.lam[:, None]) * y[rec.index])
    assert aug.pop_record() is None


def test_classifier_rescores_with_the_training_forward_attention():
    model, aug = build_bound(dict(type='TransMix', ratio=0.5))
    model.eval()  # deterministic forward (no dropout) for the comparison
    x, y = make_batch(4)
    seed_all(0)
    mixed, area_scores = aug(x, y)
    record = aug.pop_record()
    lam_area = record.lam.clone()
    aug._set_record(record)
    samples = [DataSample().set_gt_label(i) for i in range(4)]
    seen = {}
    orig = model.head.loss

    def spy(feats, data_samples):
        seen['scores'] = torch.stack([d.gt_score for d in data_samples])
        seen['mix_lam'] = torch.tensor([d.mix_lam for d in data_samples])
        seen['feats'] = feats
        return orig(feats, data_samples)

    with patch.object(model.head, 'loss', side_effect=spy):
        losses = model.loss(mixed, samples)
    out = forward_with_attention(model.backbone, mixed, attn_layer=-1)
    lam = transmix_lam(cls_attention_grid(out), record.mask, lam_area, 0.5)
    expected = lam[:, None] * y + (1 - lam[:, None]) * y[record.index]
    torch.testing.assert_close(seen['scores'], expected)
    # the record (hence a loss with lam_reduction='batch') carries the
    # re-scored weights, the area ones are kept aside
    torch.testing.assert_close(seen['mix_lam'], lam)
    torch.testing.assert_close(record.extra['lam_area'], lam_area)
    assert not torch.allclose(seen['scores'], area_scores)
    torch.testing.assert_close(seen['feats'][0], model.extract_feat(mixed)[0])
    # the training forward keeps its graph
    losses['loss'].backward()
    assert model.backbone.layers[0].attn.qkv.weight.grad is not None


def test_unbound_call_is_a_clear_error():
    x, y = make_batch(2)
    with pytest.raises(RuntimeError, match='MergeMixClassifier'):
        TransMix()(x, y)


def test_attn_layer_out_of_range_is_reported_by_the_forward():
    model, aug = build_bound(dict(type='TransMix', attn_layer=5))
    x, y = make_batch(2)
    mixed, _ = aug(x, y)
    with pytest.raises(ValueError, match='attn_layer=5 is out of range'):
        model.loss(mixed, [DataSample().set_gt_label(0)] * 2)


@pytest.mark.parametrize('kwargs, err', [
    (dict(alpha=0), ValueError),
    (dict(ratio=1.5), ValueError),
    (dict(ratio=-0.1), ValueError),
    (dict(attn_layer=1.0), TypeError),
])
def test_bad_hyper_parameters(kwargs, err):
    with pytest.raises(err, match=list(kwargs)[0]):
        TransMix(**kwargs)


def test_cls_attention_grid_is_the_head_mean_cls_row():
    model, _ = build_bound(dict(type='TransMix'))
    x, _ = make_batch(2)
    with torch.no_grad():
        out = forward_with_attention(model.backbone, x, attn_layer=-1)
    expected = out.attn[:, :, 0, 1:].float().mean(1).reshape(2, 8, 8)
    torch.testing.assert_close(cls_attention_grid(out), expected)


def test_cls_attention_grid_shares_merged_tokens_attention():
    model, _ = build_bound(dict(type='TransMix'))
    x, _ = make_batch(2)
    with torch.no_grad():
        out = forward_with_attention(model.backbone, x, attn_layer=1,
                                     r_list=[16, 0])
    assert out.attn.shape[-1] == 65 - 16
    total = out.attn[:, :, 0, 1:].float().mean(1).sum(1)
    torch.testing.assert_close(
        cls_attention_grid(out).flatten(1).sum(1), total)


def test_cutmix_box_law(monkeypatch):
    """``cutmix_box``: sides ``int(H * sqrt(1 - lam))`` and
    ``int(W * sqrt(1 - lam))`` around the drawn centre."""
    from mergemix_mm.models.batch_augments import box_utils
    monkeypatch.setattr(box_utils.np.random, 'randint', lambda n: n // 2)
    y1, y2, x1, x2 = box_utils.cutmix_box(0.64, 100, 50)
    assert (y2 - y1, x2 - x1) == (60, 30)
    assert (y1, x1) == (20, 10)


@pytest.mark.parametrize('augment, read', [
    (dict(type='SMMix'), lambda aug, x: aug.saliency(x)),
    (dict(type='TokenMix'), lambda aug, x: aug.activation_map(x)),
    (dict(type='AttentiveCutMix'), lambda aug, x: aug.saliency(x)),
    (dict(type='AttentiveCutMix', grid_size=4),
     lambda aug, x: aug.saliency(x)),
])
def test_attention_baselines_read_the_bound_models_cls_row(augment, read):
    """SMMix's saliency, TokenMix's activation map (normalised to sum 1)
    and AttentiveCutMix's ViT saliency (pooled to ``grid_size``) are the
    head-mean CLS row of the bound model's last block in eval mode (the
    other tests stub the maps or check only their shape)."""
    model, aug = build_bound(augment)
    x, _ = make_batch(2)
    model.train()
    with torch.no_grad():
        got = read(aug, x)
        assert model.training  # the eval-mode pass put the model back
        model.eval()
        out = forward_with_attention(model.backbone, x, attn_layer=-1)
    ref = out.attn[:, :, 0, 1:].float().mean(1).reshape(2, 8, 8)
    if augment['type'] == 'TokenMix':
        ref = ref / ref.sum((1, 2), keepdim=True)
    if augment.get('grid_size'):
        ref = torch.nn.functional.adaptive_avg_pool2d(ref[:, None], 4)[:, 0]
    torch.testing.assert_close(got, ref)
