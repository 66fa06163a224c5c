"""Tests for the timm ToMe forward and the ToMeTimmViT backbone."""
import pytest
import timm
import torch
from tome_utils import randomize_
from mmpretrain.registry import MODELS
from timm.models.vision_transformer import VisionTransformer

from mergemix_mm.models.batch_augments.attention_utils import \
    cls_attention_grid
from mergemix_mm.models.tome import (forward_with_attention, source_to_sizes,
                                     tome_timm_forward, vit_geometry)
from mergemix_mm.models.tome.timm_vit import timm_pool

TINY = dict(img_size=32, patch_size=4, embed_dim=48, depth=4, num_heads=4)

# global_pool='prr' exists in newer timm releases only (the requirement is
# timm >= 1.0.16; CI installs the newest, where these tests run).
_PRR = pytest.mark.skipif(
    not hasattr(timm.layers, 'AttentionPoolPrr')
    and not hasattr(timm.layers.attention_pool, 'AttentionPoolPrr'),
    reason=f"global_pool='prr' is not in timm {timm.__version__}")


def _prr(kwargs):
    return pytest.param(kwargs, marks=_PRR)


def _timm(**kwargs):
    model = randomize_(VisionTransformer(num_classes=10, **TINY, **kwargs))
    return model.eval()


@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(global_pool='avg'),
    dict(reg_tokens=2),
    dict(qk_norm=True, init_values=0.1),
    dict(class_token=False, global_pool='avg'),
    dict(global_pool='max'),
    dict(global_pool='avgmax', reg_tokens=1),
    dict(class_token=False, global_pool='map'),
    _prr(dict(global_pool='prr')),
])
def test_no_merge_equals_timm(kwargs, images):
    model = _timm(**kwargs)
    with torch.no_grad():
        ref = model(images)
        out = tome_timm_forward(model, images, [0] * 4, attn_layer=1)
        assert torch.allclose(model.head(out.outs[0]), ref, atol=1e-5)
        assert torch.allclose(
            out.tokens, model.forward_features(images), atol=1e-5)


@pytest.mark.parametrize('kwargs,p', [(dict(), 1), (dict(reg_tokens=2), 3)])
def test_merging_invariants(kwargs, p, images):
    model = _timm(**kwargs)
    r_list = [10, 8, 6, 4]
    with torch.no_grad():
        out = tome_timm_forward(model, images, r_list, attn_layer=2)
    n0 = 64 + p
    assert out.token_counts == [n0, n0 - 10, n0 - 18, n0 - 24, n0 - 28]
    assert out.tokens.shape[1] == n0 - 28
    assert torch.equal(
        out.size.sum(1).squeeze(-1), torch.full((3, ), float(n0)))
    assert torch.equal(
        source_to_sizes(out.source, n0 - 28).float(), out.size[..., 0])
    assert torch.equal(out.source[:, :p], torch.arange(p).expand(3, -1))
    assert out.attn.shape == (3, 4, n0 - 18, n0 - 18)
    assert out.source_in.max() < n0 - 18
    assert vit_geometry(model) == ((4, 4), p, 4)


POOLS = [
    dict(global_pool='token', reg_tokens=2),
    dict(global_pool='avg', reg_tokens=1),
    dict(class_token=False, global_pool='avg'),
    dict(global_pool='max'),
    dict(class_token=False, global_pool='avgmax', reg_tokens=2),
    dict(class_token=False, global_pool='map'),
    dict(global_pool='map', reg_tokens=1),
    _prr(dict(global_pool='prr')),
    _prr(dict(class_token=False, global_pool='prr')),
]


@pytest.mark.parametrize('kwargs', POOLS)
def test_pooling_counts_merged_tokens_by_size(kwargs):
    """Pooling merged tokens equals timm's own pooling of the sequence in
    which every merged token is repeated ``size`` times (what merging
    identical tokens gives)."""
    model = _timm(**kwargs)
    p = model.num_prefix_tokens
    g = torch.Generator().manual_seed(0)
    sizes = torch.tensor([1, 3, 2, 1, 4, 1, 2, 1])  # 15 originals
    # two samples with the same total size, sizes in different places
    size = torch.stack([sizes, sizes.flip(0)])
    x = torch.randn(2, p + len(sizes), 48, generator=g)
    full = torch.stack([
        torch.cat([x[b, :p], x[b, p:].repeat_interleave(size[b], dim=0)])
        for b in range(2)
    ])
    size = torch.cat([torch.ones(2, p, dtype=size.dtype), size], dim=1)
    with torch.no_grad():
        merged = timm_pool(model, x, size.float().unsqueeze(-1), merged=True)
        ref = model.forward_head(full, pre_logits=True)
    assert torch.allclose(merged, ref, atol=1e-5)
    # a token of size 1 everywhere is the unmerged case
    with torch.no_grad():
        ones = timm_pool(model, full, torch.ones(2, full.shape[1], 1), True)
    assert torch.allclose(ones, ref, atol=1e-5)


@pytest.mark.parametrize('pool', ['max', 'avgmax', 'map', _prr('prr')])
def test_merging_with_every_pool(pool, images):
    model = _timm(class_token=pool != 'max', global_pool=pool)
    model.train()
    out = tome_timm_forward(model, images, [10, 8, 6, 4], prop_attn=True)
    assert out.outs[0].shape == (3, 48)
    model.head(out.outs[0]).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.parameters())


def test_unsupported_attention_pool_while_merging(images):
    model = _timm(class_token=False, global_pool='map')
    model.attn_pool.pos_embed = torch.nn.Parameter(torch.zeros(64, 48))
    with torch.no_grad():
        with pytest.raises(ValueError, match="global_pool='map'"):
            tome_timm_forward(model, images, [4, 4, 4, 4])


@pytest.mark.parametrize('kwargs,has_cls', [(dict(reg_tokens=2), True),
                                            (dict(
                                                class_token=False,
                                                reg_tokens=2,
                                                global_pool='avg'), False)])
def test_class_token_is_reported(kwargs, has_cls, images):
    """Register tokens are prefix tokens but not a class token; the CLS
    attention map refuses a model without one."""
    model = _timm(**kwargs)
    with torch.no_grad():
        out = tome_timm_forward(model, images, [4, 4, 4, 4], attn_layer=1)
    assert out.has_cls_token is has_cls
    assert out.num_extra_tokens == (3 if has_cls else 2)
    if has_cls:
        assert cls_attention_grid(out).shape == (3, 8, 8)
    else:
        with pytest.raises(ValueError, match='class_token=False'):
            cls_attention_grid(out)


def test_timm_gradients(images):
    model = _timm(global_pool='avg')
    model.train()
    out = tome_timm_forward(model, images, [10, 8, 6, 4], prop_attn=True)
    model.head(out.outs[0]).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.parameters())


def test_wrapper_backbone(images):
    cfg = dict(
        type='ToMeTimmViT',
        model_name='vit_small_patch16_224',
        merge_num=20,
        **{
            k: v
            for k, v in TINY.items()
        })
    backbone = MODELS.build(cfg)
    randomize_(backbone)
    backbone.eval()
    plain = VisionTransformer(num_classes=0, **TINY).eval()
    # plain timm weights (no "model." prefix) load into the wrapper
    backbone.load_state_dict(plain.state_dict())
    assert set(
        backbone.state_dict()) == {'model.' + k
                                   for k in plain.state_dict()}
    with torch.no_grad():
        with backbone.merging(False):
            feats = backbone(images)
        assert isinstance(feats, tuple) and len(feats) == 1
        assert torch.allclose(
            feats[0],
            plain.forward_head(
                plain.forward_features(images), pre_logits=True),
            atol=1e-5)
        merged = forward_with_attention(backbone, images, attn_layer=0)
    assert merged.token_counts[-1] == 65 - 20
    assert torch.allclose(backbone(images)[0], merged.outs[0], atol=1e-5)


def test_mmpretrain_timm_backbone_dispatch(images):
    tb = MODELS.build(
        dict(
            type='TIMMBackbone',
            model_name='vit_tiny_patch16_224',
            img_size=32,
            patch_size=4,
            depth=2))
    tb.eval()
    assert vit_geometry(tb) == ((4, 4), 1, 2)
    with torch.no_grad():
        out = forward_with_attention(tb, images, attn_layer=1, r_list=[4, 4])
        assert torch.allclose(
            forward_with_attention(tb, images).outs[0],
            tb(images)[0],
            atol=1e-5)
    assert out.tokens.shape[1] == 65 - 8


def test_timm_bad_inputs(images):
    model = _timm()
    with pytest.raises(ValueError, match='not divisible'):
        tome_timm_forward(model, torch.randn(1, 3, 30, 30))
    with pytest.raises(ValueError, match='attn_layer=-5'):
        tome_timm_forward(model, images, attn_layer=-5)
    with pytest.raises(ValueError, match='ResNet'):
        forward_with_attention(timm.create_model('resnet18'), images)
    with pytest.raises(ValueError, match='model_name'):
        MODELS.build(dict(type='ToMeTimmViT', model_name='resnet18'))


def test_timm_distilled_deit(images):
    model = timm.create_model(
        'deit_tiny_distilled_patch16_224',
        img_size=32,
        patch_size=4,
        depth=2,
        num_classes=5)
    randomize_(model)
    model.eval()
    with torch.no_grad():
        out = tome_timm_forward(model, images, [0, 0])
        assert torch.allclose(
            out.outs[0],
            model.forward_head(
                model.forward_features(images), pre_logits=True),
            atol=1e-5)
        merged = tome_timm_forward(model, images, [10, 10])
    assert merged.num_extra_tokens == 2
    assert torch.equal(merged.source[:, :2], torch.tensor([[0, 1]] * 3))
    assert merged.tokens.shape[1] == 66 - 20


CKPT_MODEL = dict(img_size=32, patch_size=4, depth=2)


def _classifier(backbone):
    """A classifier with the DeiT bases' model-level init_cfg."""
    return MODELS.build(
        dict(
            type='MergeMixClassifier',
            backbone=backbone,
            head=dict(type='MixLabelClsHead', num_classes=10,
                      in_channels=192),
            init_cfg=[
                dict(type='TruncNormal', layer='Linear', std=.02),
                dict(type='Constant', layer='LayerNorm', val=1., bias=0.)
            ]))


def test_checkpoint_path_loads_a_timm_checkpoint(tmp_path, images):
    """A plain timm checkpoint (with its classifier) loads into the head-less
    backbone, at another image size too, and survives the classifier's
    init_weights()."""
    ref = randomize_(
        timm.create_model('deit_tiny_patch16_224', num_classes=10,
                          **CKPT_MODEL)).eval()
    path = str(tmp_path / 'timm.pth')
    torch.save(ref.state_dict(), path)
    backbone = dict(type='ToMeTimmViT', model_name='deit_tiny_patch16_224',
                    checkpoint_path=path, merge_num=8, **CKPT_MODEL)
    model = _classifier(backbone)
    model.init_weights()
    tome = model.backbone.eval()
    with torch.no_grad(), tome.merging(False):
        assert torch.equal(
            tome(images)[0],
            ref.forward_head(ref.forward_features(images), pre_logits=True))
    bigger = MODELS.build(dict(backbone, img_size=48))
    assert bigger.model.pos_embed.shape == (1, 145, 192)
    with pytest.raises(FileNotFoundError, match='checkpoint_path='):
        MODELS.build(dict(backbone, checkpoint_path=path + '.missing'))
    with pytest.raises(ValueError, match='init_cfg cannot be combined'):
        MODELS.build(dict(backbone, init_cfg=dict(type='Pretrained',
                                                  checkpoint=path)))


def test_pretrained_weights_survive_init_weights(monkeypatch):
    """timm's pretrained weights (the hub is simulated with fixed weights)
    are not overwritten by the enclosing classifier's init_cfg."""
    weights = randomize_(
        timm.create_model('deit_tiny_patch16_224', num_classes=0,
                          **CKPT_MODEL)).state_dict()
    create = timm.create_model

    def fake_create(name, pretrained=False, **kwargs):
        model = create(name, pretrained=False, **kwargs)
        if pretrained:
            model.load_state_dict(weights)
        return model

    monkeypatch.setattr(timm, 'create_model', fake_create)
    model = _classifier(
        dict(type='ToMeTimmViT', model_name='deit_tiny_patch16_224',
             pretrained=True, **CKPT_MODEL))
    model.init_weights()
    state = model.backbone.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in weights.items())


def test_init_cfg_is_not_undone_by_timm_init():
    """mmengine calls every child's ``init_weights``; timm's model has one
    that re-initialises it, which used to undo the backbone's and the
    classifier's ``init_cfg``."""
    backbone = MODELS.build(
        dict(type='ToMeTimmViT', model_name='deit_tiny_patch16_224',
             init_cfg=dict(type='Constant', layer='Linear', val=0.5,
                           bias=0.), **CKPT_MODEL))
    backbone.init_weights()
    assert torch.equal(backbone.model.blocks[1].mlp.fc1.weight.unique(),
                       torch.tensor([0.5]))
    model = _classifier(
        dict(type='ToMeTimmViT', model_name='deit_tiny_patch16_224',
             **CKPT_MODEL))
    norm = model.backbone.model.blocks[0].norm1
    torch.nn.init.constant_(norm.weight, 3.0)
    model.init_weights()  # the classifier's LayerNorm constants apply
    assert torch.equal(norm.weight, torch.ones_like(norm.weight))
    assert not any('is_init' in k for k in model.state_dict())


def test_grad_checkpointing_recomputes_the_merged_blocks(images):
    """timm's set_grad_checkpointing holds for the merged forward too: the
    blocks (merging step included) run again in the backward pass, with the
    same outputs and gradients as without it, drop-path included."""
    model = _timm(drop_path_rate=0.3).train()
    calls = []
    for blk in model.blocks:  # a block's first module: recomputing starts
        blk.norm1.register_forward_pre_hook(lambda *a: calls.append(1))
    r_list = [10, 8, 6, 4]
    results = []
    for ckpt in (False, True):
        model.set_grad_checkpointing(ckpt)
        model.zero_grad()
        torch.manual_seed(0)
        out = tome_timm_forward(model, images, r_list, trace_source=False)
        calls.clear()
        out.outs[0].square().sum().backward()
        assert len(calls) == (4 if ckpt else 0)
        results.append((out.outs[0].detach(), {
            n: p.grad.clone()
            for n, p in model.named_parameters() if p.grad is not None
        }))
    (ref, ref_grads), (got, grads) = results
    torch.testing.assert_close(got, ref)
    assert grads.keys() == ref_grads.keys() and 'blocks.0.attn.qkv.weight' \
        in grads
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name])
    with torch.no_grad():  # nothing to recompute without gradients
        calls.clear()
        tome_timm_forward(model, images, r_list)
        assert len(calls) == 4


def test_tome_timm_vit_with_cp():
    kwargs = dict(type='ToMeTimmViT', model_name='vit_tiny_patch16_224',
                  img_size=32, patch_size=4, depth=2, tome_r=4)
    backbone = MODELS.build(dict(kwargs, with_cp=True))
    assert backbone.model.grad_checkpointing
    assert not MODELS.build(kwargs).model.grad_checkpointing
    with pytest.raises(TypeError, match='with_cp'):
        MODELS.build(dict(kwargs, with_cp='yes'))


def test_distilled_deit_logits_from_the_final_tokens(images):
    """The documented way to the logits of timm's distilled DeiT: its
    forward_head on the final tokens (both heads, averaged), which reads
    only the protected class and distillation tokens."""
    from timm.models.deit import VisionTransformerDistilled
    model = randomize_(VisionTransformerDistilled(num_classes=10,
                                                  **TINY)).eval()
    with torch.no_grad():
        out = tome_timm_forward(model, images, [0] * 4)
        torch.testing.assert_close(model.forward_head(out.tokens),
                                   model(images), atol=1e-5, rtol=0)
        merged = tome_timm_forward(model, images, [10, 8, 6, 4])
        logits = model.forward_head(merged.tokens)
        expected = (model.head(merged.tokens[:, 0]) +
                    model.head_dist(merged.tokens[:, 1])) / 2
        torch.testing.assert_close(logits, expected)


def test_hybrid_vit_tokens_cover_the_stem_stride():
    """timm's hybrid ViTs (CNN stem + patches, HybridEmbed): a token covers
    patch size x stem stride pixels (here 8 x 4 = 32 px), so the patch grid,
    the recovered attention and MergeMix's pixel mask match the tokens."""
    from mergemix_mm.models.tome import recover_patch_grid
    kwargs = dict(img_size=128, embed_dim=32, depth=2, num_heads=2)
    model = timm.create_model('vit_tiny_r_s16_p8_224', num_classes=0,
                              **kwargs).eval()
    assert tuple(model.patch_embed.grid_size) == (4, 4)
    assert vit_geometry(model).patch_size == (32, 32)
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        out = tome_timm_forward(model, x, [3, 2], attn_layer=1)
    assert out.patch_resolution == (4, 4) and out.token_counts == [17, 14, 12]
    grid = recover_patch_grid(out.attn[:, :, 0, :].mean(1), out.source_in, 1,
                              out.patch_resolution)
    assert grid.shape == (2, 4, 4)
    with pytest.raises(ValueError, match='not divisible by the patch size '
                       '32x32'):
        tome_timm_forward(model, torch.randn(1, 3, 112, 112), [3, 2])

    classifier = MODELS.build(
        dict(type='MergeMixClassifier',
             backbone=dict(type='ToMeTimmViT',
                           model_name='vit_tiny_r_s16_p8_224', **kwargs),
             head=dict(type='LinearClsHead', num_classes=5, in_channels=32),
             train_cfg=dict(augments=[dict(type='MergeMix', merge_num=4)])))
    classifier.train()
    aug = classifier.data_preprocessor.batch_augments.augments[0]
    mix = aug.build_mix(torch.randn(4, 3, 128, 128))
    assert mix['patch_mask'].shape == (4, 4, 4)
    # whole 32 px cells: the pixel mask is the patch mask, upsampled
    torch.testing.assert_close(
        mix['mask'][:, 0].float(),
        mix['patch_mask'].float().repeat_interleave(32, 1).repeat_interleave(
            32, 2))
