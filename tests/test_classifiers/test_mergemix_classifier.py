import copy

import pytest
import torch
from mmengine.model import ExponentialMovingAverage
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mergemix_mm.models.classifiers import normalize_batch_augments

init_default_scope('mmpretrain')

BACKBONE = dict(
    type='VisionTransformer',
    arch=dict(embed_dims=32, num_layers=3, num_heads=2,
              feedforward_channels=64),
    img_size=32, patch_size=8, out_type='cls_token')
HEAD = dict(type='MixLabelClsHead', num_classes=5, in_channels=32)


def build(**kwargs):
    cfg = dict(type='MergeMixClassifier', backbone=copy.deepcopy(BACKBONE),
               head=HEAD, data_preprocessor=dict(num_classes=5))
    cfg.update(kwargs)
    torch.manual_seed(0)
    return MODELS.build(cfg)


def data(n=6):
    g = torch.Generator().manual_seed(1)
    return dict(
        inputs=[torch.randint(0, 255, (3, 32, 32), generator=g).float()
                for _ in range(n)],
        data_samples=[DataSample().set_gt_label(i % 5) for i in range(n)])


@pytest.mark.parametrize('cfg, expected', [
    (None, None),
    (dict(augments=[]), None),
    (dict(type='MergeMix'), dict(augments=[dict(type='MergeMix')])),
    ([dict(type='Mixup', alpha=1.0)],
     dict(augments=[dict(type='Mixup', alpha=1.0)])),
    (dict(augments=dict(type='CutMix', alpha=1.0), probs=0.5),
     dict(augments=[dict(type='CutMix', alpha=1.0)], probs=0.5)),
])
def test_normalize_batch_augments(cfg, expected):
    original = copy.deepcopy(cfg)
    assert normalize_batch_augments(cfg) == expected
    assert cfg == original  # never mutated


def test_normalize_rejects_unknown_keys_and_strings():
    with pytest.raises(TypeError, match='tome_in_mix'):
        normalize_batch_augments(dict(augments=[], tome_in_mix=True))
    with pytest.raises(TypeError, match='callable'):
        normalize_batch_augments(dict(augments=['dict(type="Mixup")']))


@pytest.mark.parametrize('where', ['train_cfg', 'data_preprocessor'])
def test_shorthand_config_builds_and_binds(where):
    if where == 'train_cfg':
        model = build(train_cfg=dict(type='MergeMix', attn_layer=1))
    else:
        model = build(data_preprocessor=dict(
            num_classes=5, batch_augments=dict(type='MergeMix', attn_layer=1)))
    aug = model.data_preprocessor.batch_augments.augments[0]
    assert type(aug).__name__ == 'MergeMix'
    assert aug.model is model


@pytest.mark.parametrize('attention_label', [True, False])
def test_mixpro_under_plain_image_classifier(attention_label):
    """MixPro with PAL re-scores labels from the training forward, which
    mmpretrain's ImageClassifier cannot do: refused, naming
    MergeMixClassifier. Without PAL it is plain MaskMix and trains there."""
    cfg = dict(type='ImageClassifier', backbone=copy.deepcopy(BACKBONE),
               head=HEAD, data_preprocessor=dict(num_classes=5),
               train_cfg=dict(augments=[dict(
                   type='MixPro', mask_patch_size=8,
                   attention_label=attention_label)]))
    if attention_label:
        with pytest.raises(ValueError, match='MergeMixClassifier'):
            MODELS.build(cfg)
        return
    model = MODELS.build(cfg)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    assert torch.isfinite(model.train_step(data(), optim)['loss'])


def test_stock_image_classifier_rejects_shorthand_but_ours_accepts():
    with pytest.raises(TypeError, match="unexpected keyword argument 'type'"):
        MODELS.build(dict(type='ImageClassifier', backbone=BACKBONE, head=HEAD,
                          data_preprocessor=dict(num_classes=5),
                          train_cfg=dict(type='MergeMix')))
    ours = MODELS.build(dict(type='MergeMixClassifier',
                             backbone=copy.deepcopy(BACKBONE), head=HEAD,
                             data_preprocessor=dict(num_classes=5),
                             train_cfg=dict(type='MergeMix', attn_layer=1)))
    (aug, ) = ours.data_preprocessor.batch_augments.augments
    assert type(aug).__name__ == 'MergeMix' and aug.attn_layer == 1


def test_mergemix_under_plain_image_classifier_is_bound():
    model = MODELS.build(dict(
        type='ImageClassifier', backbone=copy.deepcopy(BACKBONE), head=HEAD,
        data_preprocessor=dict(num_classes=5),
        train_cfg=dict(augments=[dict(type='MergeMix', attn_layer=1)])))
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    log = model.train_step(data(), optim)
    assert torch.isfinite(log['loss'])
    aug = model.data_preprocessor.batch_augments.augments[0]
    assert aug.pop_record() is None  # nobody consumes records there


@pytest.mark.parametrize('aux_loss', [None, 'mixup', 'clean'])
def test_train_step_changes_weights(aux_loss):
    model = build(train_cfg=dict(augments=[dict(type='MergeMix',
                                                attn_layer=1)]),
                  aux_loss=aux_loss)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    before = copy.deepcopy(model.state_dict())
    log = model.train_step(data(), optim)
    assert torch.isfinite(log['loss'])
    assert ('aux_loss' in log) == (aux_loss is not None)
    changed = [k for k, v in model.state_dict().items()
               if not torch.equal(v, before[k])]
    assert any(k.startswith('backbone.layers') for k in changed)
    assert any(k.startswith('head') for k in changed)
    assert optim._inner_count == 1  # one iteration, whatever the backwards


def test_aux_loss_gets_the_main_loss_accumulation_factor():
    """With gradient accumulation, mmengine divides each loss by a factor
    that depends on the iteration (the last, shorter window gets a smaller
    one). The main and the auxiliary loss of one iteration must get the same
    factor, also at the switch to the last window."""
    model = build(train_cfg=dict(augments=[dict(type='MergeMix',
                                                attn_layer=1)]),
                  aux_loss='mixup')
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.0),
                         accumulative_counts=4)
    optim.initialize_count_status(model, 0, 6)  # windows of 4, then 2
    scale_loss, factors = optim.scale_loss, []

    def spy(loss):
        scaled = scale_loss(loss)
        factors[-1].append(round(float(loss / scaled), 3))
        return scaled

    optim.scale_loss = spy
    for _ in range(6):
        factors.append([])
        model.train_step(data(4), optim)
    assert factors == [[4., 4.]] * 4 + [[2., 2.]] * 2
    assert optim._inner_count == 6


TIMM_BACKBONE = dict(
    type='ToMeTimmViT', model_name='deit_tiny_patch16_224', img_size=32,
    patch_size=8, embed_dim=32, depth=3, num_heads=2, merge_num=4,
    drop_path_rate=0.1)


@pytest.mark.parametrize('tome_in_mix', [True, False])
def test_train_and_val_step_with_timm_backbone(tome_in_mix):
    """MergeMix over a timm ViT (ToMeTimmViT): the mask pass, the merged or
    unmerged training forward and the test forward all run through timm's
    own blocks, and the step trains them."""
    model = build(backbone=copy.deepcopy(TIMM_BACKBONE),
                  tome_in_mix=tome_in_mix, aux_loss='mixup',
                  train_cfg=dict(augments=[dict(
                      type='MergeMix', attn_layer=1, merge_num=4)]))
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    before = copy.deepcopy(model.state_dict())
    log = model.train_step(data(), optim)
    assert torch.isfinite(log['loss']) and 'aux_loss' in log
    changed = [k for k, v in model.state_dict().items()
               if not torch.equal(v, before[k])]
    assert any(k.startswith('backbone.model.blocks') for k in changed)
    model.eval()
    out = model.val_step(data())
    assert out[0].pred_score.shape == (5, )


TOME_BACKBONE = dict(
    type='ToMeVisionTransformer',
    arch=dict(embed_dims=32, num_layers=3, num_heads=2,
              feedforward_channels=64),
    img_size=32, patch_size=8, out_type='cls_token', merge_num=6)


@pytest.mark.parametrize('backbone', [TOME_BACKBONE, TIMM_BACKBONE])
@pytest.mark.parametrize('tome_in_mix', [True, False])
def test_tome_in_mix_decides_whether_classifying_forwards_merge(
        backbone, tome_in_mix):
    """``tome_in_mix=True``: only the mask pass merges; the training and
    test forwards see every token. ``False``: they merge with the
    backbone's schedule too (ALGORITHM.md §4.6)."""
    model = build(backbone=copy.deepcopy(backbone), tome_in_mix=tome_in_mix,
                  train_cfg=dict(augments=[dict(
                      type='MergeMix', attn_layer=1, merge_num=4)]))
    # the last block's first norm: called by the stock and the merged
    # forwards alike, on the tokens entering the block
    norm = (model.backbone.model.blocks[-1].norm1
            if backbone['type'] == 'ToMeTimmViT' else
            model.backbone.layers[-1].ln1)
    seen = []
    norm.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].shape[1]))
    full = 17  # 16 patches + CLS
    merged = full - sum(model.backbone.current_r_list[:-1])
    assert merged < full
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    model.train_step(data(), optim)  # the mask pass stops at block 1
    assert seen == [full if tome_in_mix else merged]
    seen.clear()
    model.eval()
    model.val_step(data())
    assert seen == [full if tome_in_mix else merged]


def test_an_unused_backbone_schedule_is_logged():
    """With tome_in_mix=True a ToMe backbone's own schedule never runs in
    the classifier (the official configs set one anyway): said once in the
    log, naming the schedule; nothing is said without one or with False."""
    import logging

    from mmengine.logging import MMLogger

    class Capture(logging.Handler):
        def __init__(self):
            super().__init__()
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    logger = MMLogger.get_current_instance()
    capture = Capture()
    logger.addHandler(capture)
    try:
        build(backbone=copy.deepcopy(TOME_BACKBONE))
        (message, ) = [m for m in capture.messages if 'unused' in m]
        assert 'tome_in_mix=True' in message and 'train r [' in message
        capture.messages.clear()
        build(backbone=copy.deepcopy(TOME_BACKBONE), tome_in_mix=False)
        build(backbone=dict(TOME_BACKBONE, merge_num=0))
        build()
        assert not [m for m in capture.messages if 'unused' in m]
    finally:
        logger.removeHandler(capture)


def test_main_loss_uses_each_samples_label_weight_with_batch_head():
    """With a batch-reduction head the main loss is
    mean(lam) CE(y) + (1 - mean(lam)) CE(y[pi]) over the record's own
    per-sample label weights (here MergeMix's per-sample draws)."""
    import numpy as np
    head = dict(
        HEAD,
        loss=dict(type='MixedLabelCrossEntropyLoss', lam_reduction='batch'))
    model = build(head=head, train_cfg=dict(augments=[dict(
        type='MergeMix', attn_layer=1, lam_scale=False, mode='elem',
        lam_reduction='sample')]))
    torch.manual_seed(2)
    np.random.seed(2)
    batch = model.data_preprocessor(data(), True)
    inputs, samples = batch['inputs'], batch['data_samples']
    record = model._pop_record()
    loss = model._main_loss(inputs, samples, record)['loss']
    lam = record.lam.float()
    assert lam.max() - lam.min() > 0.2  # per-sample weights
    logits = model.head(model.extract_feat(inputs)).float()
    logp = logits.log_softmax(-1)
    y = torch.cat([ds.gt_label for ds in samples])
    ce = -logp.gather(1, y[:, None]).mean()
    ce_partner = -logp.gather(1, y[record.index][:, None]).mean()
    expected = lam.mean() * ce + (1 - lam.mean()) * ce_partner
    torch.testing.assert_close(loss, expected)


class KeepGradWrapper(OptimWrapper):
    """Optimizer wrapper that keeps gradients (no step, no zero_grad)."""

    def step(self, **kwargs):
        pass

    def zero_grad(self, **kwargs):
        pass


def test_sequential_backward_equals_summed_loss_gradient():
    import numpy as np
    from mmengine.model import BaseModel
    grads = []
    for sequential in (True, False):
        model = build(train_cfg=dict(augments=[dict(
            type='MergeMix', attn_layer=1, lam_scale=False)]),
            aux_loss='clean')
        optim = KeepGradWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
        torch.manual_seed(5)
        np.random.seed(5)
        if sequential:
            log = model.train_step(data(), optim)
        else:
            log = BaseModel.train_step(model, data(), optim)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()
                      if p.grad is not None})
        assert 'aux_loss' in log
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name],
                                   rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize('augment', ['MergeMix', 'TransMix'])
@pytest.mark.parametrize('aux_loss', ['clean', 'mixup'])
def test_aux_loss_uses_its_own_targets_with_batch_reduction(augment,
                                                            aux_loss):
    """The auxiliary loss trains on its own targets (clean labels, or its
    own Mixup draw), never on the main loss's partner / label weight, also
    when the head's loss reads them (``lam_reduction='batch'``); the
    caller's data samples are left unchanged."""
    import numpy as np

    from mergemix_mm.models.batch_augments.base import mix_scores
    head = dict(
        HEAD,
        loss=dict(type='MixedLabelCrossEntropyLoss', lam_reduction='batch'))
    aug = (dict(type='MergeMix', attn_layer=1, lam_scale=False)
           if augment == 'MergeMix' else dict(type='TransMix', alpha=1.0))
    model = build(head=head, aux_loss=aux_loss,
                  train_cfg=dict(augments=[aug]))
    torch.manual_seed(2)
    np.random.seed(2)
    batch = model.data_preprocessor(data(), True)
    inputs, samples = batch['inputs'], batch['data_samples']
    record = model._pop_record()
    assert record is not None
    model._main_loss(inputs, samples, record)
    for ds in samples:
        assert 'mix_index' not in ds and 'mix_lam' not in ds
    torch.manual_seed(3)
    aux = model._aux_loss(record, samples)['aux_loss']
    torch.manual_seed(3)
    clean, target = record.clean_inputs, record.clean_scores
    if aux_loss == 'mixup':
        lam = float(torch.distributions.Beta(model.aux_alpha,
                                             model.aux_alpha).sample())
        index = torch.randperm(clean.size(0))
        clean = lam * clean + (1 - lam) * clean[index]
        target = mix_scores(target, index, lam)
    logits = model.head(model.extract_feat(clean)).float()
    expected = -(target * logits.log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(aux, expected)


@pytest.mark.parametrize('aug', [
    dict(type='MergeMix', attn_layer=1),
    dict(type='TransMix', alpha=1.0),
    dict(type='MixPro', mask_patch_size=8),
    dict(type='SMMix'),
    dict(type='TokenMix'),
    dict(type='TdAttenMix'),
    dict(type='AttentiveCutMix'),
    dict(type='CutMix', alpha=1.0),
], ids=lambda a: a['type'])
def test_aux_loss_follows_mergemix_batches_only(aug):
    """The official recipe's auxiliary loss belongs to MergeMix: a child
    config that swaps in a baseline (model-aware or not) trains without it,
    in train_step and in loss() (the DDP path) alike."""
    import numpy as np
    model = build(train_cfg=dict(augments=[aug]), aux_loss='mixup')
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.0))
    np.random.seed(0)
    torch.manual_seed(0)
    log = model.train_step(data(), optim)
    expected = aug['type'] == 'MergeMix'
    assert ('aux_loss' in log) == expected
    batch = model.data_preprocessor(data(), True)
    losses = model.loss(batch['inputs'], batch['data_samples'])
    assert ('aux_loss' in losses) == expected


def test_logged_loss_is_main_plus_auxiliary():
    import numpy as np
    model = build(train_cfg=dict(augments=[dict(
        type='MergeMix', attn_layer=1, lam_scale=False)]),
        aux_loss='mixup')
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.0))
    torch.manual_seed(5)
    np.random.seed(5)
    log = model.train_step(data(), optim)
    torch.manual_seed(5)
    np.random.seed(5)
    batch = model.data_preprocessor(data(), True)
    record = model._pop_record()
    main = model._main_loss(batch['inputs'], batch['data_samples'], record)
    aux = model._aux_loss(record, batch['data_samples'])
    torch.testing.assert_close(log['aux_loss'], aux['aux_loss'])
    torch.testing.assert_close(log['loss'],
                               main['loss'] + aux['aux_loss'])


def test_ema_copy_binds_its_augment_to_the_copy():
    model = build(train_cfg=dict(augments=[dict(type='MergeMix',
                                                attn_layer=1)]),
                  aux_loss='mixup')
    ema = ExponentialMovingAverage(model)
    aug = ema.module.data_preprocessor.batch_augments.augments[0]
    assert aug.model is ema.module  # deepcopy keeps the binding consistent


def test_tome_in_mix_false_needs_tome_backbone():
    with pytest.raises(ValueError, match='needs a ToMe backbone'):
        build(tome_in_mix=False)


@pytest.mark.parametrize('kwargs, match', [
    (dict(aux_loss='cutmix'), 'aux_loss'),
    (dict(aux_alpha=0), 'aux_alpha'),
    (dict(aux_alpha=float('nan')), 'aux_alpha=nan'),
])
def test_bad_classifier_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build(**kwargs)


def test_aux_alpha_must_be_a_number():
    with pytest.raises(TypeError, match='MergeMixClassifier: aux_alpha=True'):
        build(aux_alpha=True)


@pytest.mark.parametrize('kind', ['Mixup', 'CutMix', 'ResizeMix'])
def test_int_alpha_of_mmpretrain_augments_is_accepted(kind):
    """mmpretrain asserts ``isinstance(alpha, float)``: ``alpha=1`` failed
    with a bare AssertionError. It is the float it means; the config is not
    modified."""
    train_cfg = dict(augments=[dict(type=kind, alpha=1)])
    original = copy.deepcopy(train_cfg)
    model = build(train_cfg=train_cfg)
    (aug, ) = model.data_preprocessor.batch_augments.augments
    assert type(aug).__name__ == kind and aug.alpha == 1.0
    assert train_cfg == original
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    assert torch.isfinite(model.train_step(data(), optim)['loss'])


@pytest.mark.parametrize('kind', ['Mixup', 'CutMix', 'ResizeMix'])
@pytest.mark.parametrize('alpha, error', [
    (0.0, ValueError), (-1.0, ValueError), (float('nan'), ValueError),
    ('1', TypeError), (True, TypeError)])
def test_bad_alpha_of_mmpretrain_augments_names_the_setting(
        kind, alpha, error):
    """Instead of mmpretrain's bare AssertionError."""
    with pytest.raises(error, match=f'{kind}: alpha='):
        build(train_cfg=dict(augments=[dict(type=kind, alpha=alpha)]))
    with pytest.raises(error, match=f'{kind}: alpha='):
        normalize_batch_augments([dict(type='MergeMix'),
                                  dict(type=kind, alpha=alpha)])
