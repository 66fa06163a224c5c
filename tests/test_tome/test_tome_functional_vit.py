"""Tests for the functional ToMe forward over stock mmpretrain ViTs."""
import pytest
import torch
from tome_utils import randomize_
from mmpretrain.models.backbones import (DistilledVisionTransformer,
                                         VisionTransformer)

from mergemix_mm.models.tome import (forward_with_attention, source_to_sizes,
                                     tome_vit_forward, vit_geometry)


def _flat(outs):
    return [t for o in outs for t in (o if isinstance(o, tuple) else (o, ))]


def _build(cls, arch, **kwargs):
    kwargs.setdefault('img_size', 32)
    kwargs.setdefault('patch_size', 4)
    model = randomize_(cls(arch=arch, **kwargs))
    model.eval()  # mmpretrain's BaseBackbone.train returns None
    return model


@pytest.mark.parametrize('cls',
                         [VisionTransformer, DistilledVisionTransformer])
@pytest.mark.parametrize('out_type',
                         ['cls_token', 'avg_featmap', 'raw', 'featmap'])
def test_no_merge_equals_stock(cls, out_type, tiny_arch, images):
    model = _build(cls, tiny_arch, out_type=out_type, out_indices=(1, 3))
    with torch.no_grad():
        ref = _flat(model(images))
        out = _flat(tome_vit_forward(model, images, [0] * 4).outs)
    assert len(ref) == len(out)
    for a, b in zip(ref, out):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=1e-5)


def test_no_merge_equals_stock_train_mode_and_attention_capture(
        tiny_arch, images):
    # The explicit-softmax block (attention captured) equals the SDPA block.
    model = _build(VisionTransformer, tiny_arch)
    ref = model(images)[0]
    for layer in range(4):
        out = tome_vit_forward(model, images, None, attn_layer=layer)
        assert torch.allclose(out.outs[0], ref, atol=1e-5)
    model.train()  # no dropout configured: still deterministic
    assert torch.allclose(
        tome_vit_forward(model, images).outs[0], model(images)[0], atol=1e-5)


@pytest.mark.parametrize('cls,p', [(VisionTransformer, 1),
                                   (DistilledVisionTransformer, 2)])
def test_schedule_sizes_and_source(cls, p, tiny_arch, images):
    model = _build(cls, tiny_arch, out_type='raw', out_indices=(0, 1, 2, 3))
    r_list = [12, 9, 7, 5]
    with torch.no_grad():
        out = tome_vit_forward(model, images, r_list)
    n0 = 64 + p
    expected = [n0]
    for r in r_list:
        expected.append(expected[-1] - r)
    assert out.token_counts == expected
    # token count after each block follows the schedule
    assert [o.shape[1] for o in out.outs] == expected[1:]
    n = expected[-1]
    assert out.size.shape == (3, n, 1)
    # sizes sum to the original token count and match the source map
    assert torch.equal(
        out.size.sum(1).squeeze(-1), torch.full((3, ), n0.__float__()))
    assert torch.equal(
        source_to_sizes(out.source, n).float(), out.size[..., 0])
    # every original token maps to exactly one current token in range
    assert out.source.shape == (3, n0)
    assert out.source.min() >= 0 and out.source.max() < n
    # protected tokens stay at their index and receive no patch
    assert torch.equal(out.source[:, :p], torch.arange(p).expand(3, -1))
    assert (out.source[:, p:] >= p).all()
    assert out.num_extra_tokens == p and out.patch_resolution == (8, 8)


def test_attention_capture_semantics(tiny_arch, images):
    model = _build(VisionTransformer, tiny_arch)
    r_list = [10, 8, 6, 4]
    with torch.no_grad():
        ref = tome_vit_forward(model, images, r_list)
        out = tome_vit_forward(model, images, r_list, attn_layer=2)
    # capturing does not change the result
    assert torch.allclose(ref.outs[0], out.outs[0], atol=1e-5)
    t_in = out.token_counts[2]
    assert out.attn.shape == (3, 4, t_in, t_in)
    assert torch.allclose(out.attn.sum(-1), torch.ones(3, 4, t_in), atol=1e-5)
    assert not out.attn.requires_grad
    # source_in indexes the tokens entering block 2
    assert out.source_in.shape == (3, 65)
    assert out.source_in.max() < t_in
    assert set(out.source_in[0].tolist()) == set(range(t_in))
    # and the final map is source_in composed with blocks 2 and 3: later
    # merges only join tokens, so originals that share a token entering
    # block 2 share their final token, and every final token is used
    assert out.source.max() < out.token_counts[-1]
    for b in range(3):
        pairs = set(zip(out.source_in[b].tolist(), out.source[b].tolist()))
        assert len({i for i, _ in pairs}) == len(pairs) == t_in
        assert len({f for _, f in pairs}) == out.token_counts[-1]

    # the captured attention is the softmax of the stock qkv on those tokens
    captured = {}
    layer = model.layers[2]
    h = layer.ln1.register_forward_hook(
        lambda m, i, o: captured.setdefault('x', o))
    with torch.no_grad():
        tome_vit_forward(model, images, r_list)
    h.remove()
    x = captured['x']
    qkv = layer.attn.qkv(x).reshape(3, t_in, 3, 4, 12).permute(2, 0, 3, 1, 4)
    ref_attn = (qkv[0] @ qkv[1].transpose(-2, -1) * 12**-0.5).softmax(-1)
    assert torch.allclose(out.attn, ref_attn, atol=1e-5)


def test_prop_attn_paths_agree(tiny_arch, images):
    model = _build(VisionTransformer, tiny_arch)
    r_list = [10, 8, 6, 4]
    with torch.no_grad():
        fused = tome_vit_forward(model, images, r_list, prop_attn=True)
        explicit = tome_vit_forward(
            model, images, r_list, prop_attn=True, attn_layer=3)
        plain = tome_vit_forward(model, images, r_list)
    assert torch.allclose(fused.outs[0], explicit.outs[0], atol=1e-5)
    assert not torch.allclose(fused.outs[0], plain.outs[0], atol=1e-4)


def test_avg_featmap_is_size_weighted(tiny_arch, images):
    model = _build(VisionTransformer, tiny_arch, out_type='avg_featmap')
    with torch.no_grad():
        out = tome_vit_forward(model, images, [10, 8, 6, 4])
        tokens, size = out.tokens[:, 1:], out.size[:, 1:]
        ref = model.ln2((tokens * size).sum(1) / size.sum(1))
    assert torch.allclose(out.outs[0], ref, atol=1e-6)


def test_gradients_reach_all_parameters(tiny_arch, images):
    model = _build(VisionTransformer, tiny_arch, out_type='avg_featmap')
    model.train()
    out = tome_vit_forward(model, images, [10, 8, 6, 4], attn_layer=1)
    out.outs[0].pow(2).sum().backward()
    missing = [
        n for n, p in model.named_parameters()
        if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert missing == []


def test_bad_inputs(tiny_arch, images):
    model = _build(VisionTransformer, tiny_arch)
    with pytest.raises(ValueError, match='not divisible by the patch size'):
        tome_vit_forward(model, torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match='attn_layer=4 is out of range'):
        tome_vit_forward(model, images, attn_layer=4)
    with pytest.raises(ValueError, match='r_list'):
        tome_vit_forward(model, images, [40, 0, 0, 0])
    with pytest.raises(ValueError, match='r_list'):
        tome_vit_forward(model, images, [1, -1, 0, 0])
    with pytest.raises(ValueError, match='4 blocks'):
        tome_vit_forward(model, images, [1, 1])
    with pytest.raises(ValueError, match='ResNet'):
        from mmpretrain.models.backbones import ResNet
        tome_vit_forward(ResNet(depth=18), images)
    with pytest.raises(ValueError, match='ResNet'):
        from mmpretrain.models.backbones import ResNet
        vit_geometry(ResNet(depth=18))
    fm = _build(VisionTransformer, tiny_arch, out_type='featmap')
    with pytest.raises(ValueError, match='featmap'):
        tome_vit_forward(fm, images, [1, 0, 0, 0])


def test_dispatch_and_geometry(tiny_arch, images):
    model = _build(VisionTransformer, tiny_arch)
    assert vit_geometry(model) == ((4, 4), 1, 4)
    d = _build(DistilledVisionTransformer, tiny_arch)
    assert vit_geometry(d) == ((4, 4), 2, 4)
    with torch.no_grad():
        a = forward_with_attention(model, images, attn_layer=-1)
        b = tome_vit_forward(model, images, attn_layer=3)
    assert torch.equal(a.attn, b.attn)


@pytest.mark.parametrize('backend', ['mmpretrain', 'timm'])
def test_stop_at_attn_layer(backend, tiny_arch, images):
    """The early-exit mask pass returns the same attention and entering
    source map as the full pass, runs no block after ``attn_layer`` and
    needs an ``attn_layer``."""
    if backend == 'mmpretrain':
        model = _build(VisionTransformer, tiny_arch)
        norms = [layer.ln1 for layer in model.layers]
    else:
        from timm.models.vision_transformer import \
            VisionTransformer as TimmViT
        model = randomize_(
            TimmViT(num_classes=10, img_size=32, patch_size=4, embed_dim=48,
                    depth=4, num_heads=4))
        model.eval()
        norms = [blk.norm1 for blk in model.blocks]
    r_list = [10, 8, 6, 4]
    calls = []
    hooks = [
        n.register_forward_pre_hook(lambda m, a, i=i: calls.append(i))
        for i, n in enumerate(norms)
    ]
    with torch.no_grad():
        full = forward_with_attention(model, images, 1, r_list)
        assert calls == [0, 1, 2, 3]
        calls.clear()
        short = forward_with_attention(
            model, images, 1, r_list, trace_source=False,
            stop_at_attn_layer=True)
    for h in hooks:
        h.remove()
    assert calls == [0, 1]
    assert torch.equal(full.attn, short.attn)
    assert torch.equal(full.source_in, short.source_in)
    assert short.outs == ()
    assert short.tokens.shape[1] == full.token_counts[2]  # after block 1
    with pytest.raises(ValueError, match='stop_at_attn_layer'):
        forward_with_attention(model, images, None, r_list,
                               stop_at_attn_layer=True)


def test_stop_at_attn_layer_outs_empty_with_earlier_out_indices(
        tiny_arch, images):
    """A stopping pass returns no outputs, as documented, even when an
    ``out_indices`` entry lies before ``attn_layer``; the full pass still
    returns one per entry."""
    model = _build(VisionTransformer, tiny_arch, out_indices=(0, 3))
    with torch.no_grad():
        full = tome_vit_forward(model, images, [4, 4, 4, 4], attn_layer=2)
        short = tome_vit_forward(
            model, images, [4, 4, 4, 4], attn_layer=2,
            stop_at_attn_layer=True)
    assert len(full.outs) == 2
    assert short.outs == ()
    assert torch.equal(full.attn, short.attn)
