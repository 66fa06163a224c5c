"""The textbook ToMe yardstick computes the same function as the stock and
the library forwards."""
import os.path as osp
import sys

import pytest
import torch

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'benchmarks'))

import textbook_tome  # noqa: E402

from mergemix_mm.models.tome import tome_vit_forward  # noqa: E402


@pytest.fixture
def vit():
    from mmpretrain.models.backbones import VisionTransformer
    torch.manual_seed(0)
    model = VisionTransformer(
        arch=dict(
            embed_dims=48,
            num_layers=4,
            num_heads=3,
            feedforward_channels=96),
        img_size=32,
        patch_size=4)
    model.eval()
    return model


def test_no_merging_equals_the_stock_forward(vit):
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ours = textbook_tome.textbook_forward(vit, x, [0] * 4)
        stock = vit(x)[-1]
    torch.testing.assert_close(ours, stock, atol=1e-5, rtol=1e-5)


def test_merging_equals_the_library_forward(vit):
    x = torch.randn(3, 3, 32, 32)
    r_list = [8, 6, 4, 2]
    with torch.no_grad():
        textbook = textbook_tome.textbook_forward(
            vit, x, r_list, prop_attn=False)
        library = tome_vit_forward(
            vit, x, r_list, prop_attn=False, trace_source=False).outs[-1]
        proportional = textbook_tome.textbook_forward(vit, x, r_list)
        library_prop = tome_vit_forward(
            vit, x, r_list, prop_attn=True, trace_source=False).outs[-1]
    torch.testing.assert_close(textbook, library, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        proportional, library_prop, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(textbook, proportional, atol=1e-4)


def test_needs_a_single_class_token(vit):
    vit.cls_token = None
    with pytest.raises(ValueError, match='class token'):
        textbook_tome.textbook_forward(vit, torch.randn(1, 3, 32, 32), [0] * 4)
