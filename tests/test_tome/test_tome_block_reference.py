"""One ToMe block step against a hand-written reference: proportional
attention adds log(size) to the logits, and the tokens are matched on the
head-mean *keys* of the block's attention (mmpretrain and timm blocks)."""
import pytest
import timm
import torch
from mmpretrain.models.backbones import VisionTransformer
from tome_utils import randomize_

from mergemix_mm.models.tome import (bipartite_soft_matching, init_source,
                                     merge_source, merge_wavg)
from mergemix_mm.models.tome.functional import attention
from mergemix_mm.models.tome.mmpretrain_vit import tome_layer_forward
from mergemix_mm.models.tome.timm_vit import tome_timm_block_forward


@pytest.mark.parametrize('need_attn', [False, True])
def test_proportional_attention_adds_log_size(need_attn):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 4, generator=g) for _ in range(3))
    size = torch.randint(1, 6, (2, 7, 1), generator=g).float()
    logits = q @ k.transpose(-2, -1) * 4**-0.5
    bias = size.log().transpose(1, 2)[:, None]  # [B, 1, 1, T]: per key
    for prop_attn, extra in ((True, bias), (False, 0.)):
        out, attn = attention(q, k, v, size, prop_attn, need_attn)
        ref = (logits + extra).softmax(-1)
        torch.testing.assert_close(out, ref @ v, rtol=1e-5, atol=1e-6)
        if need_attn:
            torch.testing.assert_close(attn, ref)
    # the bias changes the result (sizes differ)
    assert not torch.allclose(
        attention(q, k, v, size, True)[0], attention(q, k, v, size)[0])


def _mmpretrain_block():
    vit = randomize_(VisionTransformer(
        arch=dict(embed_dims=32, num_layers=1, num_heads=4,
                  feedforward_channels=64), img_size=32, patch_size=4))
    layer = vit.layers[0].eval()

    def keys(h):
        B, T, _ = h.shape
        qkv = layer.attn.qkv(layer.ln1(h)).reshape(B, T, 3, 4, 8)
        return qkv[:, :, 1].transpose(1, 2), qkv[:, :, 0].transpose(1, 2)

    def step(x, r, size, source):
        return tome_layer_forward(layer, x, r, size, source, 1)

    return keys, step


def _timm_block():
    model = timm.create_model('vit_tiny_patch16_224', img_size=32,
                              patch_size=4, embed_dim=32, depth=1,
                              num_heads=4, qk_norm=True)
    blk = randomize_(model).blocks[0].eval()

    def keys(h):
        B, T, _ = h.shape
        qkv = blk.attn.qkv(blk.norm1(h)).reshape(B, T, 3, 4, 8)
        q, k = qkv[:, :, 0].transpose(1, 2), qkv[:, :, 1].transpose(1, 2)
        return blk.attn.k_norm(k), blk.attn.q_norm(q)

    def step(x, r, size, source):
        return tome_timm_block_forward(blk, x, r, size, source, 1)

    return keys, step


@pytest.mark.parametrize('make', [_mmpretrain_block, _timm_block])
def test_block_merges_on_head_mean_keys(make):
    """The block's merge equals bipartite matching on its keys averaged over
    heads, applied to the tokens after the attention residual (and it is
    not the matching the queries would give)."""
    keys_of, step = make()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 17, 32, generator=g)
    size = torch.randint(1, 4, (2, 17, 1), generator=g).float()
    source = init_source(2, 17)
    r = 5
    with torch.no_grad():
        out, out_size, out_source, _ = step(x, r, size, source)
        k, q = keys_of(x)
        by_keys = bipartite_soft_matching(k.mean(1), r, 1)
        by_queries = bipartite_soft_matching(q.mean(1), r, 1)
    assert out.shape == (2, 12, 32)
    assert torch.equal(out_source, merge_source(source, by_keys))
    assert not torch.equal(out_source, merge_source(source, by_queries))
    _, ref_size = merge_wavg(x, size, by_keys)
    torch.testing.assert_close(out_size, ref_size)
