"""The ToMe forwards trace into one torch.compile graph (no graph breaks).

The ``dynamo_graphs`` backend (tests/conftest.py) records every graph Dynamo
captures and runs it with the stock kernels, so the tests need no C++
toolchain and compare exactly against eager mode. ``fullgraph=True`` is not
used to detect breaks: it lets Dynamo capture data-dependent output shapes
(``torch.unique``) that split the graph under the default
``torch.compile(model)``.
"""
import pytest
import torch
from tome_utils import randomize_
from mmpretrain.registry import MODELS
from timm.models.vision_transformer import VisionTransformer

from mergemix_mm.models.tome import (bipartite_soft_matching,
                                     forward_with_attention, head_mean_metric,
                                     merge_wavg, tome_timm_forward)


def _compiled(fn, recorder):
    """``fn`` compiled with ``recorder`` as the backend; calling it asserts
    that it was captured as one graph."""
    compiled = torch.compile(fn, backend=recorder)

    def call(*args):
        out = compiled(*args)
        count = len(recorder.graphs)
        assert count == 1, f'{count} graphs: the forward has graph breaks'
        return out

    return call


def _tome_vit(tiny_arch, **kwargs):
    model = MODELS.build(
        dict(
            type='ToMeVisionTransformer',
            arch=tiny_arch,
            img_size=32,
            patch_size=4,
            **kwargs))
    return randomize_(model)


def _flat(outs):
    return [t for o in outs for t in (o if isinstance(o, tuple) else (o, ))]


def _assert_same(ref, out):
    assert ref.token_counts == out.token_counts
    assert len(_flat(ref.outs)) == len(_flat(out.outs))
    for a, b in zip(_flat(ref.outs), _flat(out.outs)):
        assert torch.equal(a, b)
    for name in ('tokens', 'size', 'source', 'attn', 'source_in'):
        a, b = getattr(ref, name), getattr(out, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert torch.equal(a, b), name


def test_matching_and_merge_compile(dynamo_graphs):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 37, 16, generator=gen)
    # sizes > 1 and many A tokens sharing a partner (r close to its maximum)
    size = torch.randint(1, 4, (3, 37, 1), generator=gen).float()

    def step(x, size):
        matching = bipartite_soft_matching(x, 16, num_protected=1)
        return merge_wavg(x, size, matching)

    ref = step(x, size)
    out = _compiled(step, dynamo_graphs)(x, size)
    for a, b in zip(ref, out):
        assert torch.equal(a, b)


@pytest.mark.parametrize('training', [False, True])
@pytest.mark.parametrize('merge_num', [0, 20])
def test_mmpretrain_backbone_compiles(dynamo_graphs, tiny_arch, images,
                                      training, merge_num):
    model = _tome_vit(
        tiny_arch,
        merge_num=merge_num,
        drop_path_rate=0.2,
        out_type='avg_featmap')
    model.train(training)
    torch.manual_seed(3)  # the same drop-path draws on both sides
    ref = model(images)
    torch.manual_seed(3)
    out = _compiled(model, dynamo_graphs)(images)
    assert torch.allclose(ref[0], out[0], atol=1e-6)
    if training and merge_num:
        out[0].sum().backward()
        assert all(p.grad is not None for p in model.parameters()
                   if p.requires_grad and p is not model.pos_embed)


@pytest.mark.parametrize('stop', [False, True])
def test_attention_capture_compiles_mmpretrain(dynamo_graphs, tiny_arch,
                                               images, stop):
    model = _tome_vit(tiny_arch, merge_num=20, prop_attn=True).eval()

    def mask_pass(x):
        return forward_with_attention(
            model, x, attn_layer=2, stop_at_attn_layer=stop)

    with torch.no_grad():
        _assert_same(mask_pass(images),
                     _compiled(mask_pass, dynamo_graphs)(images))


def test_timm_forward_compiles(dynamo_graphs, images):
    model = randomize_(
        VisionTransformer(
            img_size=32,
            patch_size=4,
            embed_dim=48,
            depth=4,
            num_heads=4,
            num_classes=10,
            reg_tokens=2)).eval()

    def forward(x):
        return tome_timm_forward(
            model, x, [10, 8, 6, 4], prop_attn=True, attn_layer=1)

    with torch.no_grad():
        _assert_same(forward(images),
                     _compiled(forward, dynamo_graphs)(images))


def test_head_mean_metric_compiles(dynamo_graphs):
    keys = torch.randn(2, 4, 9, 8)
    assert torch.equal(head_mean_metric(keys),
                       _compiled(head_mean_metric, dynamo_graphs)(keys))


def test_train_and_test_schedules_compile_static(dynamo_graphs, tiny_arch,
                                                 images):
    """Switching between the training and the test schedule of a compiled
    backbone compiles each once, with static token counts (the schedules are
    module attributes, so Dynamo specialises on them), and the batch size
    may change without a new schedule graph per size."""
    model = _tome_vit(
        tiny_arch, merge_num=20, test_merge_num=10, out_type='avg_featmap')
    compiled = torch.compile(model, backend=dynamo_graphs)
    model.train()
    compiled(images)
    model.eval()
    with torch.no_grad():
        compiled(images)
        ref = model(images[:2])
        out = compiled(images[:2])
    model.train()
    compiled(images)
    # train, eval, then eval with a batch-size symbol; nothing for the
    # second training call
    graphs = dynamo_graphs.graphs
    assert len(graphs) == 3
    symbolic = [[x for x in inputs if not isinstance(x, torch.Tensor)]
                for inputs in graphs]
    assert symbolic[0] == [] and symbolic[1] == []
    # the batch size, not an r value
    assert [type(x) for x in symbolic[2]] == [torch.SymInt]
    assert torch.equal(ref[0], out[0])
