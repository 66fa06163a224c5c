import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mergemix_mm.models.batch_augments import mix_scores

init_default_scope('mmpretrain')


def make_batch(seed=0, n=6, c=5):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g)
    labels = torch.randint(0, c, (n, ), generator=g)
    index = torch.roll(torch.arange(n), 1)
    lam = torch.rand(n, generator=g)
    return logits, labels, index, lam


def official_batch_mean_loss(logits, labels, index, lam, eps):
    """OpenMixup: lam_bar * LSCE_mean(y) + (1 - lam_bar) * LSCE_mean(y[pi])."""
    c = logits.shape[1]
    logp = F.log_softmax(logits, -1)

    def lsce(y):
        t = F.one_hot(y, c).float() * (1 - eps) + eps / c
        return -(t * logp).sum(-1).mean()

    lam_bar = lam.mean()
    return lam_bar * lsce(labels) + (1 - lam_bar) * lsce(labels[index])


def samples(labels, scores, index=None, lam=None):
    out = []
    for i in range(len(labels)):
        ds = DataSample().set_gt_label(int(labels[i])).set_gt_score(scores[i])
        if index is not None:
            ds.set_field(int(index[i]), 'mix_index', field_type='metainfo')
            ds.set_field(float(lam[i]), 'mix_lam', field_type='metainfo')
        out.append(ds)
    return out


def head(reduction, eps=0.1):
    return MODELS.build(dict(
        type='MixLabelClsHead', num_classes=5, in_channels=5,
        loss=dict(type='MixedLabelCrossEntropyLoss', label_smooth_val=eps,
                  lam_reduction=reduction)))


def test_sample_reduction_is_soft_ce_with_smoothing():
    logits, labels, index, lam = make_batch()
    scores = mix_scores(F.one_hot(labels, 5).float(), index, lam)
    loss = head('sample').loss_module(logits, scores)
    target = scores * 0.9 + 0.1 / 5
    expected = -(target * F.log_softmax(logits, -1)).sum(-1).mean()
    torch.testing.assert_close(loss, expected)


def test_batch_reduction_equals_official_form():
    logits, labels, index, lam = make_batch()
    scores = mix_scores(F.one_hot(labels, 5).float(), index, lam)
    h = head('batch')
    loss = h._get_loss(logits, samples(labels, scores, index, lam))['loss']
    torch.testing.assert_close(
        loss, official_batch_mean_loss(logits, labels, index, lam, 0.1))
    # ... and it differs from the per-sample form on the same batch
    per_sample = head('sample')._get_loss(
        logits, samples(labels, scores, index, lam))['loss']
    assert not torch.allclose(loss, per_sample)


def test_batch_reduction_equals_per_sample_with_mean_lambda():
    """Linearity: official batch-mean loss == per-sample soft CE on scores
    that use the batch-mean weight for every row (what MergeMix emits with
    lam_reduction='batch')."""
    logits, labels, index, lam = make_batch(3)
    lam_bar = lam.mean().expand(len(lam))
    scores = mix_scores(F.one_hot(labels, 5).float(), index, lam_bar)
    loss = head('sample')._get_loss(logits, samples(labels, scores))['loss']
    torch.testing.assert_close(
        loss, official_batch_mean_loss(logits, labels, index, lam, 0.1))


def test_loss_in_fp32_for_half_logits():
    """The log-softmax runs in float32 (its value, not only the dtype: fp32
    targets would promote a half log-softmax's result to float32 too)."""
    logits, labels, _, _ = make_batch()
    half = logits.half()
    loss = head('sample').loss_module(half, labels)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(
        loss, head('sample').loss_module(half.float(), labels),
        rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('kwargs, match', [
    (dict(label_smooth_val=1.0), 'label_smooth_val'),
    (dict(lam_reduction='mean'), 'lam_reduction'),
])
def test_bad_loss_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MODELS.build(dict(type='MixedLabelCrossEntropyLoss', **kwargs))


def test_cal_acc_rejected():
    with pytest.raises(ValueError, match='cal_acc'):
        MODELS.build(dict(type='MixLabelClsHead', num_classes=5,
                          in_channels=5, cal_acc=True))


def test_batch_reduction_without_mix_fields_is_soft_ce():
    """An unmixed batch (no mix_index) under lam_reduction='batch' falls
    back to the soft-target loss on gt_score."""
    logits, labels, index, lam = make_batch(5)
    scores = mix_scores(F.one_hot(labels, 5).float(), index, lam)
    loss = head('batch')._get_loss(logits, samples(labels, scores))['loss']
    target = scores * 0.9 + 0.1 / 5
    expected = -(target * F.log_softmax(logits, -1)).sum(-1).mean()
    torch.testing.assert_close(loss, expected)


def test_loss_weight_scales_the_loss():
    logits, labels, _, _ = make_batch()
    plain = MODELS.build(dict(type='MixedLabelCrossEntropyLoss'))
    heavy = MODELS.build(dict(type='MixedLabelCrossEntropyLoss',
                              loss_weight=2.5))
    torch.testing.assert_close(heavy(logits, labels),
                               2.5 * plain(logits, labels))
