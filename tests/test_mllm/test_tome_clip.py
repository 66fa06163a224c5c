"""ToMe inside the HF CLIP vision tower of LLaVA."""
import pytest
import torch

from mergemix_mm.mllm import clip_merge_schedule, clip_tome_forward
from mergemix_mm.models.tome import recover


@pytest.fixture
def tower(tiny_llava):
    model = tiny_llava[0]
    return model.model.vision_tower.eval()


def test_no_merge_equals_stock_hidden_states(tower):
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = tower(x, output_hidden_states=True).hidden_states
        for layer in (-2, -1, 1):
            out = clip_tome_forward(tower, x, 0, feature_layer=layer)
            assert torch.allclose(out.hidden_states, ref[layer], atol=1e-5)


@pytest.mark.parametrize('merge_num', [1, 16, 32, 40])
def test_budget_is_exact_and_cls_protected(tower, merge_num):
    x = torch.randn(3, 3, 32, 32)
    out = clip_tome_forward(tower, x, merge_num, need_attn=True)
    assert out.hidden_states.shape == (3, 1 + 64 - merge_num, 32)
    assert out.token_counts[-1] == 65 - merge_num
    assert (out.source[:, 0] == 0).all()
    assert (out.source[:, 1:] != 0).all()
    assert (out.source < out.hidden_states.shape[1]).all()
    # sizes add up to all 65 original tokens; CLS keeps size 1
    assert torch.allclose(out.size.sum(1).squeeze(-1), torch.full((3, ), 65.))
    assert (out.size[:, 0] == 1).all()
    # the mask attention lives in the space of the tokens entering attn_layer
    assert out.cls_attn.shape[1] == out.token_counts[-2]
    assert torch.allclose(out.cls_attn.sum(1), torch.ones(3), atol=1e-5)
    assert torch.equal(out.patch_scores,
                       out.cls_attn.gather(1, out.attn_source[:, 1:]))


def test_attn_layer_and_size_errors(tower):
    with pytest.raises(ValueError, match='attn_layer=2 is out of range'):
        clip_tome_forward(tower, torch.randn(1, 3, 32, 32), attn_layer=2,
                          need_attn=True)
    with pytest.raises(ValueError, match='image_size=32'):
        clip_tome_forward(tower, torch.randn(1, 3, 48, 48))
    with pytest.raises(ValueError, match='merge_num=64'):
        clip_merge_schedule(64, 2, 64)


def test_merge_is_per_sample(tower):
    """The metric is per sample: a sample's merge does not depend on the
    other samples of the batch (the official LLaVA code shares one merge
    pattern across the batch)."""
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        full = clip_tome_forward(tower, x, 24)
        single = clip_tome_forward(tower, x[2:3], 24)
    assert torch.equal(full.source[2:3], single.source)
    assert torch.allclose(full.hidden_states[2:3], single.hidden_states,
                          atol=1e-5)


def _cls_attention(layer, x, head=None):
    """CLS-row attention of a CLIP layer built from its q/k projections:
    softmax over the keys, mean over the heads (or one ``head``)."""
    attn = layer.self_attn
    B, T, _ = x.shape
    heads, dim = attn.num_heads, attn.head_dim
    h = layer.layer_norm1(x)
    q = attn.q_proj(h[:, :1]).view(B, 1, heads, dim).transpose(1, 2)
    k = attn.k_proj(h).view(B, T, heads, dim).transpose(1, 2)
    probs = ((q @ k.transpose(-2, -1)) * dim**-0.5).softmax(-1)
    if head is not None:
        return probs[:, head, 0]
    return probs[:, :, 0].mean(1)


@pytest.mark.parametrize('attn_layer', [0, 1])
def test_cls_attn_is_the_head_mean_cls_row_without_merging(
        tower, attn_layer):
    x = torch.randn(2, 3, 32, 32)
    layers = tower.vision_model.encoder.layers if hasattr(
        tower, 'vision_model') else tower.encoder.layers
    with torch.no_grad():
        hs = tower(x, output_hidden_states=True).hidden_states
        ref = _cls_attention(layers[attn_layer], hs[attn_layer])
        out = clip_tome_forward(tower, x, 0, attn_layer=attn_layer,
                                need_attn=True)
    assert out.cls_attn.shape == ref.shape == (2, 65)
    torch.testing.assert_close(out.cls_attn, ref, atol=1e-6, rtol=1e-5)
    # the heads really differ, so the mean is not any single head
    assert not torch.allclose(_cls_attention(layers[attn_layer],
                                             hs[attn_layer], head=0), ref)
    assert torch.equal(out.attn_source, torch.arange(65).expand(2, 65))
    torch.testing.assert_close(out.patch_scores, ref[:, 1:], atol=1e-6,
                               rtol=1e-5)


def test_cls_attn_and_source_are_those_entering_attn_layer(tower):
    """With merging before and inside ``attn_layer``, the CLS attention and
    the source map describe the tokens *entering* that block (the output
    of the blocks before it), not the tokens after its merge."""
    x = torch.randn(2, 3, 32, 32)
    layers = tower.vision_model.encoder.layers if hasattr(
        tower, 'vision_model') else tower.encoder.layers
    with torch.no_grad():
        out = clip_tome_forward(tower, x, r_list=[10, 12], attn_layer=1,
                                need_attn=True)
        # the tokens leaving block 0 as block 1 receives them: merge order
        first = clip_tome_forward(tower, x, feature_layer=1, r_list=[10])
        ref = _cls_attention(layers[1], first.hidden_states)
    assert out.token_counts == [65, 55, 43]
    # source map after block 0 (= entering block 1), onto all 55 tokens
    assert torch.equal(out.attn_source, first.source)
    assert out.attn_source.max() == 54
    for row in out.attn_source:
        assert row.unique().tolist() == list(range(55))
    assert not torch.equal(out.attn_source, out.source)
    torch.testing.assert_close(out.cls_attn, ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.patch_scores,
                               ref.gather(1, first.source[:, 1:]),
                               atol=1e-6, rtol=1e-5)
    # attention of block 0: the unmerged grid, source is the identity
    with torch.no_grad():
        out0 = clip_tome_forward(tower, x, r_list=[10, 12], attn_layer=0,
                                 need_attn=True)
    assert torch.equal(out0.attn_source, torch.arange(65).expand(2, 65))
    assert out0.cls_attn.shape == (2, 65)


def _first_patch(source, n):
    """First original token held by each of the ``n`` current tokens."""
    return torch.stack([
        torch.stack([(row == t).nonzero()[0, 0] for t in range(n)])
        for row in source
    ])


@pytest.mark.parametrize('merge_num', [1, 24, 40])
def test_token_order_raster_and_merged(tower, merge_num):
    """By default the LLM receives the merged tokens in the order merging
    leaves them (official code); ``'raster'`` sorts them by the first patch
    each holds (the order of un-merged tokens). Both hold the same
    tokens."""
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        merged = clip_tome_forward(tower, x, merge_num, need_attn=True)
        raster = clip_tome_forward(tower, x, merge_num, need_attn=True,
                                   token_order='raster')
    n = 65 - merge_num
    first_r = _first_patch(raster.source, n)
    first_m = _first_patch(merged.source, n)
    assert (first_r.diff(dim=1) > 0).all() and (first_r[:, 0] == 0).all()
    assert not (first_m.diff(dim=1) > 0).all()
    assert torch.equal(first_r, first_m.sort(dim=1).values)
    # the same token features and sizes per original patch
    torch.testing.assert_close(recover(raster.hidden_states, raster.source),
                               recover(merged.hidden_states, merged.source))
    assert torch.equal(recover(raster.size[..., 0], raster.source),
                       recover(merged.size[..., 0], merged.source))
    # the mask attention describes the tokens entering attn_layer: the same
    assert torch.equal(raster.patch_scores, merged.patch_scores)


def test_token_order_without_merging_and_errors(tower):
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = tower(x, output_hidden_states=True).hidden_states[-2]
        for order in ('raster', 'merged'):
            out = clip_tome_forward(tower, x, 0, token_order=order)
            torch.testing.assert_close(out.hidden_states, ref, atol=1e-5,
                                       rtol=1e-5)
    with pytest.raises(ValueError, match="token_order='first'"):
        clip_tome_forward(tower, x, 4, token_order='first')


def test_attention_dropout_is_applied_in_training(tiny_llava):
    """Train mode with attention dropout 0.5: the unmerged ToMe tower drops
    the same attention weights as HF's CLIP layers (same seed), and another
    seed gives another output."""
    tower = tiny_llava[0].model.vision_tower
    layers = tower.vision_model.encoder.layers if hasattr(
        tower, 'vision_model') else tower.encoder.layers
    saved = [layer.self_attn.dropout for layer in layers]
    was_training = tower.training
    x = torch.randn(2, 3, 32, 32)
    try:
        for layer in layers:
            layer.self_attn.dropout = 0.5
        tower.train()
        with torch.no_grad():
            torch.manual_seed(3)
            ref = tower(x, output_hidden_states=True).hidden_states[-1]
            torch.manual_seed(3)
            out = clip_tome_forward(tower, x, 0, feature_layer=-1)
            torch.manual_seed(4)
            other = clip_tome_forward(tower, x, 0, feature_layer=-1)
    finally:
        for layer, p in zip(layers, saved):
            layer.self_attn.dropout = p
        tower.train(was_training)
    torch.testing.assert_close(out.hidden_states, ref, atol=1e-5,
                               rtol=1e-5)
    assert not torch.allclose(out.hidden_states, other.hidden_states,
                              atol=1e-3)


def test_cls_attention_uses_the_proportional_bias(tower):
    """With ``prop_attn`` the captured CLS attention adds ``log(size)`` of
    the keys, as the block's own attention does (hand-computed from the
    layer's projections)."""
    from mergemix_mm.mllm.tome_clip import _block
    layers = tower.vision_model.encoder.layers if hasattr(
        tower, 'vision_model') else tower.encoder.layers
    layer = layers[0]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 9, layer.self_attn.embed_dim, generator=g)
    size = torch.randint(1, 5, (2, 9, 1), generator=g).float()
    source = torch.arange(9).expand(2, 9)
    with torch.no_grad():
        *_, cls_attn, _ = _block(layer, x, size, source, 0, True, True)
        attn = layer.self_attn
        h = layer.layer_norm1(x)
        heads, d = attn.num_heads, attn.head_dim
        q = attn.q_proj(h).view(2, 9, heads, d).transpose(1, 2)
        k = attn.k_proj(h).view(2, 9, heads, d).transpose(1, 2)
        logits = (q[:, :, :1] * attn.scale) @ k.transpose(-2, -1)
        logits = logits + size.log().transpose(1, 2)[:, None]
        ref = logits.softmax(-1).mean(1)[:, 0]
    torch.testing.assert_close(cls_attn, ref, atol=1e-6, rtol=1e-5)
