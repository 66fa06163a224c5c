"""The token-dropping bound runs the library's ToMe forwards at the merged
token counts, with the merging step swapped only while it runs."""
import os.path as osp
import sys

import pytest
import torch

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'benchmarks'))

import drop_oracle  # noqa: E402

from mergemix_mm.models.tome import (mmpretrain_vit, timm_vit,  # noqa: E402
                                     tome_timm_forward, tome_vit_forward)


def _mmpretrain_vit(out_type='raw'):
    from mmpretrain.models.backbones import VisionTransformer
    torch.manual_seed(0)
    model = VisionTransformer(
        arch=dict(
            embed_dims=48, num_layers=4, num_heads=3,
            feedforward_channels=96),
        img_size=32,
        patch_size=4,
        out_type=out_type)
    model.eval()
    return model


def _timm_vit():
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    model = VisionTransformer(
        img_size=32, patch_size=4, embed_dim=48, depth=4, num_heads=3,
        global_pool='token')
    model.eval()
    return model


@pytest.mark.parametrize('build', [_mmpretrain_vit, _timm_vit])
def test_token_counts_follow_the_schedule(build):
    model = build()
    x = torch.randn(2, 3, 32, 32)
    r_list = [8, 6, 4, 2]
    counts = []
    real = mmpretrain_vit.tome_layer_forward
    block = timm_vit.tome_timm_block_forward

    def spy(fn):
        def wrapped(layer, tokens, *args, **kwargs):
            counts.append(tokens.shape[1])
            return fn(layer, tokens, *args, **kwargs)
        return wrapped

    with torch.no_grad(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(mmpretrain_vit, 'tome_layer_forward', spy(real))
        mp.setattr(timm_vit, 'tome_timm_block_forward', spy(block))
        outs = drop_oracle.drop_forward_fn(model, r_list)(x)
    assert counts == [65, 57, 51, 47]
    if build is _mmpretrain_vit:  # out_type='raw': the final tokens
        assert outs[-1].shape == (2, 65 - 20, 48)
    assert all(torch.isfinite(o).all() for o in outs)


@pytest.mark.parametrize('build', [_mmpretrain_vit, _timm_vit])
def test_no_dropping_is_the_library_forward(build):
    model = build()
    x = torch.randn(2, 3, 32, 32)
    forward = (tome_vit_forward
               if build is _mmpretrain_vit else tome_timm_forward)
    with torch.no_grad():
        ours = drop_oracle.drop_forward_fn(model, [0] * 4)(x)
        ref = forward(model, x, [0] * 4, trace_source=False).outs
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_dropping_keeps_the_leading_tokens_and_sizes():
    x = torch.arange(2 * 9 * 2, dtype=torch.float).reshape(2, 9, 2)
    size = torch.ones(2, 9, 1)
    out, out_size, source = drop_oracle.drop_tokens(
        x, size, None, keys=None, r=3, num_protected=1)
    assert torch.equal(out, x[:, :6]) and out.is_contiguous()
    assert out_size.shape == (2, 6, 1) and source is None
    with pytest.raises(ValueError, match='r=5 is out of range'):
        drop_oracle.drop_tokens(x, None, None, None, 5, 1)
    with pytest.raises(ValueError, match='trace_source=False'):
        drop_oracle.drop_tokens(x, None, torch.zeros(2, 9), None, 1, 1)


def test_the_merging_step_is_restored_after_an_error():
    saved = (mmpretrain_vit.merge_tokens, timm_vit.merge_tokens)
    with pytest.raises(RuntimeError, match='boom'):
        with drop_oracle.dropping_merge():
            assert mmpretrain_vit.merge_tokens is drop_oracle.drop_tokens
            assert timm_vit.merge_tokens is drop_oracle.drop_tokens
            raise RuntimeError('boom')
    assert (mmpretrain_vit.merge_tokens, timm_vit.merge_tokens) == saved
    # and a real merged forward still merges (sizes > 1 appear)
    model = _mmpretrain_vit()
    with torch.no_grad():
        res = tome_vit_forward(model, torch.randn(1, 3, 32, 32), [8, 0, 0, 0])
    assert res.size.max() > 1
