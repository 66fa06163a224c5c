"""Tests for the timm ToMe forward and the ToMeTimmViT backbone."""
import pytest
import timm
import torch
from tome_utils import randomize_
from mmpretrain.registry import MODELS
from timm.models.vision_transformer import VisionTransformer

from mergemix_mm.models.tome import (forward_with_attention, source_to_sizes,
                                     tome_timm_forward, vit_geometry)

TINY = dict(img_size=32, patch_size=4, embed_dim=48, depth=4, num_heads=4)


def _timm(**kwargs):
    model = randomize_(VisionTransformer(num_classes=10, **TINY, **kwargs))
    return model.eval()


@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(global_pool='avg'),
    dict(reg_tokens=2),
    dict(qk_norm=True, init_values=0.1),
    dict(class_token=False, global_pool='avg'),
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
