"""Tests for the registered ToMe backbones (mmpretrain ViT / DeiT)."""
import pytest
import torch
from tome_utils import randomize_
from mmpretrain.models.backbones import (DistilledVisionTransformer,
                                         VisionTransformer)
from mmpretrain.registry import MODELS

from mergemix_mm.models.tome import forward_with_attention, vit_geometry


def _pair(tiny_arch, stock_type, tome_type, **tome_kwargs):
    common = dict(arch=tiny_arch, img_size=32, patch_size=4)
    stock = MODELS.build(dict(type=stock_type, **common))
    tome = MODELS.build(dict(type=tome_type, **common, **tome_kwargs))
    randomize_(stock)
    tome.load_state_dict(stock.state_dict())
    stock.eval()
    tome.eval()
    return stock, tome


@pytest.mark.parametrize('stock_type,tome_type', [
    ('VisionTransformer', 'ToMeVisionTransformer'),
    ('DistilledVisionTransformer', 'ToMeDistilledVisionTransformer'),
])
def test_state_dict_and_no_merge_equivalence(tiny_arch, images, stock_type,
                                             tome_type):
    stock, tome = _pair(tiny_arch, stock_type, tome_type, merge_num=20)
    assert list(stock.state_dict()) == list(tome.state_dict())
    with torch.no_grad():
        ref = stock(images)
        with tome.merging(False):
            out = tome(images)
        merged = tome(images)
    flat = [t for o in ref for t in (o if isinstance(o, tuple) else (o, ))]
    flat_out = [t for o in out for t in (o if isinstance(o, tuple) else (o, ))]
    for a, b in zip(flat, flat_out):
        assert torch.allclose(a, b, atol=1e-5)
    # merging changes the output (but not its shape for cls_token)
    first = merged[0][0] if isinstance(merged[0], tuple) else merged[0]
    assert first.shape == flat[0].shape
    assert not torch.allclose(first, flat[0], atol=1e-4)


def test_train_and_test_schedules(tiny_arch, images):
    tome = MODELS.build(
        dict(
            type='ToMeVisionTransformer',
            arch=tiny_arch,
            img_size=32,
            patch_size=4,
            out_type='raw',
            merge_num=20,
            test_merge_num=0))
    assert sum(tome.train_r_list) == 20 and tome.test_r_list == [0] * 4
    tome.train()
    assert tome(images)[0].shape[1] == 65 - 20
    tome.eval()
    assert tome(images)[0].shape[1] == 65
    tome.train()
    with tome.merging(False):
        assert tome.current_r_list == [0] * 4
        assert tome(images)[0].shape[1] == 65
    assert tome.current_r_list == tome.train_r_list
    r = MODELS.build(
        dict(
            type='ToMeVisionTransformer',
            arch=tiny_arch,
            img_size=32,
            patch_size=4,
            tome_r=3,
            test_tome_r=[5, 0, 0, 0]))
    assert r.train_r_list == [3] * 4 and r.test_r_list == [5, 0, 0, 0]


@pytest.mark.parametrize('tome_type', [
    'ToMeVisionTransformer', 'ToMeDistilledVisionTransformer', 'ToMeTimmViT'
])
def test_train_and_eval_return_self(tiny_arch, tome_type):
    """``model = Backbone(...).eval()`` works as with any torch module."""
    if tome_type == 'ToMeTimmViT':
        cfg = dict(model_name='vit_tiny_patch16_224', img_size=32,
                   patch_size=4, depth=2, merge_num=4)
    else:
        cfg = dict(arch=tiny_arch, img_size=32, patch_size=4, merge_num=4)
    model = MODELS.build(dict(type=tome_type, **cfg))
    assert model.eval() is model and not model.training
    assert model.current_r_list == model.test_r_list
    assert model.train() is model and model.training
    assert all(m.training for m in model.modules())


def test_tome_forward_and_dispatch(tiny_arch, images):
    _, tome = _pair(
        tiny_arch,
        'DistilledVisionTransformer',
        'ToMeDistilledVisionTransformer',
        merge_num=20)
    assert vit_geometry(tome) == ((4, 4), 2, 4)
    with torch.no_grad():
        out = forward_with_attention(tome, images, attn_layer=2)
    assert out.token_counts[-1] == 66 - 20
    assert out.attn.shape[-1] == out.token_counts[2]
    assert torch.equal(out.source[:, :2], torch.tensor([[0, 1]] * 3))
    with torch.no_grad(), tome.merging(False):
        off = forward_with_attention(tome, images, attn_layer=2)
    assert off.token_counts == [66] * 5


def test_gradients_with_merging(tiny_arch, images):
    tome = MODELS.build(
        dict(
            type='ToMeVisionTransformer',
            arch=tiny_arch,
            img_size=32,
            patch_size=4,
            merge_num=24,
            drop_path_rate=0.1,
            out_type='avg_featmap',
            prop_attn=True))
    randomize_(tome)
    tome.train()
    tome(images)[0].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in tome.parameters())


def test_named_archs_build():
    for arch in ('deit-tiny', 'deit-small'):
        m = MODELS.build(
            dict(type='ToMeVisionTransformer', arch=arch, merge_num=98))
        assert m.train_r_list == [8, 12, 11, 10, 10, 9, 8, 7, 7, 6, 5, 5]
        assert isinstance(m, VisionTransformer)
    d = MODELS.build(
        dict(
            type='ToMeDistilledVisionTransformer',
            arch='deit-tiny',
            merge_num=49))
    assert isinstance(d, DistilledVisionTransformer) and sum(
        d.train_r_list) == 49


@pytest.mark.parametrize('kwargs,match', [
    (dict(merge_num=80), 'merge_num=80'),
    (dict(tome_r=-1), 'tome_r'),
    (dict(tome_r=[1, -2]), r'tome_r\[1\]'),
    (dict(merge_num=8, tome_r=2), 'mutually exclusive'),
    (dict(merge_num=8, out_type='featmap'), 'featmap'),
    (dict(test_merge_num=70), 'test_merge_num=70'),
    # an explicit 0 ("no merging at test") is a setting too, not "unset"
    (dict(test_merge_num=0, test_tome_r=2), 'mutually exclusive'),
    (dict(out_type='featmap', test_merge_num=8), 'featmap'),
    (dict(schedule_compat='x', merge_num=4), 'schedule_compat'),
    (dict(merge_num=8, merge_inflect=5.0), 'merge_inflect=5.0'),
])
def test_bad_settings(tiny_arch, kwargs, match):
    with pytest.raises(ValueError, match=match):
        MODELS.build(
            dict(
                type='ToMeVisionTransformer',
                arch=tiny_arch,
                img_size=32,
                patch_size=4,
                **kwargs))


def test_bad_image_size_while_merging(tiny_arch):
    tome = MODELS.build(
        dict(
            type='ToMeVisionTransformer',
            arch=tiny_arch,
            img_size=32,
            patch_size=4,
            merge_num=8))
    with pytest.raises(ValueError, match='not divisible by the patch size'):
        tome(torch.randn(1, 3, 30, 30))


@pytest.mark.parametrize('merge_num', [0, 8])
@pytest.mark.parametrize('tome_type,kwargs', [
    ('ToMeVisionTransformer', dict(arch=dict(
        embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64))),
    ('ToMeTimmViT', dict(model_name='vit_tiny_patch16_224', embed_dim=32,
                         depth=4, num_heads=2)),
    ('ToMeTimmViT', dict(model_name='vit_tiny_patch16_224', embed_dim=32,
                         depth=4, num_heads=2, dynamic_img_pad=True)),
])
def test_img_size_setting_not_divisible_by_patch(tome_type, kwargs,
                                                 merge_num):
    """A stock ViT pads (mmpretrain) or crops (timm) an img_size that is
    not a whole number of patches; a ToMe backbone refuses it when it is
    built, naming the settings, whatever the schedule (MergeMix's mask pass
    merges with its own)."""
    with pytest.raises(ValueError,
                       match='img_size=30x30 is not divisible by '
                       'patch_size=4x4'):
        MODELS.build(dict(type=tome_type, img_size=30, patch_size=4,
                          merge_num=merge_num, **kwargs))


@pytest.mark.parametrize('tome_type,kwargs', [
    ('ToMeVisionTransformer', dict(arch=dict(
        embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64))),
    ('ToMeTimmViT', dict(model_name='vit_tiny_patch16_224', embed_dim=32,
                         depth=4, num_heads=2, dynamic_img_size=True)),
])
def test_smaller_images_than_the_schedule_was_built_for(tome_type, kwargs):
    """The schedules are checked for the configured image size; images that
    give too few tokens fail naming the setting and both sizes, larger
    images merge the same tokens per block."""
    tome = MODELS.build(
        dict(
            type=tome_type,
            img_size=32,
            patch_size=4,
            merge_num=40,
            test_merge_num=20,
            **kwargs))
    small = torch.randn(1, 3, 16, 16)  # 17 tokens instead of 65
    tome.train()
    with pytest.raises(ValueError,
                       match=r'merge_num=40 \(a schedule for 65 tokens; '
                       r'16x16 images give 17\): block \d'):
        tome(small)
    tome.eval()
    with torch.no_grad():
        with pytest.raises(ValueError, match=r'test_merge_num=20 \(a '):
            tome.tome_forward(small)
        out = forward_with_attention(tome, torch.randn(1, 3, 48, 48))
        assert out.token_counts[0] - out.token_counts[-1] == 20
        with tome.merging(False):
            assert tome(small)[0].shape == (1, 32)
