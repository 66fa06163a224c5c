"""The compiled yardstick compiles exactly the timed forwards, as one graph
each, with inductor's freezing option."""
import os.path as osp
import sys

import pytest
import torch

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'benchmarks'))

import compiled_tome  # noqa: E402


def _timm_vit():
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    return VisionTransformer(
        img_size=32, patch_size=4, embed_dim=48, depth=4,
        num_heads=3).eval()


def _mmpretrain_vit():
    from mergemix_mm.models.backbones import ToMeVisionTransformer
    torch.manual_seed(0)
    return ToMeVisionTransformer(
        arch=dict(
            embed_dims=48, num_layers=4, num_heads=3,
            feedforward_channels=96),
        img_size=32,
        patch_size=4).eval()


@pytest.fixture
def counting_compile(monkeypatch, dynamo_graphs):
    """``torch.compile`` with the ``dynamo_graphs`` backend (every captured
    graph's example inputs, run with the stock kernels); records the
    options it was given."""
    compile_ = torch.compile
    record = dict(graphs=dynamo_graphs.graphs, options=[])

    def fake(fn, options=None, dynamic=None, **kwargs):
        record['options'].append((dynamic, options))
        return compile_(fn, backend=dynamo_graphs, dynamic=dynamic,
                        **kwargs)

    monkeypatch.setattr(torch, 'compile', fake)
    return record


@pytest.mark.parametrize('build', [_timm_vit, _mmpretrain_vit])
@pytest.mark.parametrize('r_list', [[0, 0, 0, 0], [6, 4, 2, 2]])
def test_compiles_the_timed_forward_as_one_graph(counting_compile, build,
                                                 r_list):
    import common
    model = build()
    bench = common.load_tool('benchmark_speed')
    x = torch.randn(2, 3, 32, 32)
    fn = compiled_tome.compiled_forward_fn(model, r_list)
    with torch.no_grad():
        ref = bench.forward_fn(model, r_list)(x)
        out = fn(x)
    assert len(counting_compile['graphs']) == 1
    assert counting_compile['options'] == [(False, {'freezing': True})]
    ref, out = (t if isinstance(t, tuple) else (t, ) for t in (ref, out))
    assert len(ref) == len(out)
    for a, b in zip(ref, out):
        assert torch.equal(a, b)


def test_settings_compile_static_shapes(counting_compile):
    """Every setting compiles the same forward function again; the second
    compilation must not turn the ``r`` values into symbolic sizes (with
    automatic dynamic shapes inductor did not finish compiling DeiT-S)."""
    model = _timm_vit()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for r_list in ([6, 4, 2, 2], [4, 4, 4, 2], [2, 2, 2, 2]):
            compiled_tome.compiled_forward_fn(model, r_list)(x)
    graphs = counting_compile['graphs']
    assert len(graphs) == 3
    assert all(
        isinstance(t, torch.Tensor) and not any(
            isinstance(d, torch.SymInt) for d in t.shape)
        for inputs in graphs for t in inputs)


def test_recompile_limit_is_raised_not_lowered(counting_compile):
    limit = torch._dynamo.config.recompile_limit
    try:
        torch._dynamo.config.recompile_limit = 8
        compiled_tome.compiled_forward_fn(_timm_vit(), [0, 0, 0, 0])
        assert torch._dynamo.config.recompile_limit == (
            compiled_tome.RECOMPILE_LIMIT)
        torch._dynamo.config.recompile_limit = 1000
        compiled_tome.compiled_forward_fn(_timm_vit(), [0, 0, 0, 0])
        assert torch._dynamo.config.recompile_limit == 1000
    finally:
        torch._dynamo.config.recompile_limit = limit


@pytest.mark.slow
def test_inductor_output_matches_eager():
    """The real inductor build (needs a C++ compiler; about a minute)."""
    import common
    model = _timm_vit()
    bench = common.load_tool('benchmark_speed')
    x = torch.randn(2, 3, 32, 32)
    torch._dynamo.reset()
    with torch.no_grad():
        ref = bench.forward_fn(model, [6, 4, 2, 2])(x)
        out = compiled_tome.compiled_forward_fn(model, [6, 4, 2, 2])(x)
    torch._dynamo.reset()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
