"""Tests for tools/analysis/get_flops.py and benchmark_speed.py."""
import importlib.util
import json
import os
import os.path as osp

import pytest
from mmpretrain.registry import MODELS

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


def _load(name):
    path = osp.join(ROOT, 'tools', 'analysis', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'_tool_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_deit_small_flops_match_paper():
    tool = _load('get_flops')
    rows = tool.main(['--arch', 'deit-small', '--settings', 'none', 'merge49'])
    none, merge49 = rows
    # Linear/Conv-only counting, as in the paper: 4.24 and 3.56 GFLOPs
    assert round(none['linear_conv'] / 1e9, 2) == 4.24
    assert round(merge49['linear_conv'] / 1e9, 2) == 3.56
    # attention matmuls: 2 T^2 D per block
    assert round(none['total'] / 1e9, 2) == 4.60
    assert merge49['tokens'][-1] == 148


def test_flops_of_classifier_include_head(tiny_arch):
    tool = _load('get_flops')
    model = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(
                type='ToMeVisionTransformer',
                arch=tiny_arch,
                img_size=32,
                patch_size=4),
            head=dict(
                type='VisionTransformerClsHead',
                num_classes=10,
                in_channels=48)))
    res = tool.count_flops(model, [0] * 4, img_size=32)
    d, t = 48, 65
    expected = 64 * 48 * 3 * 16 + 4 * (t * (4 * d * d + 2 * d * 96)) + d * 10
    assert res['linear_conv'] == expected
    assert res['attention'] == 4 * 2 * t * t * d
    merged = tool.count_flops(model, [8, 8, 8, 8], img_size=32)
    assert merged['tokens'] == [65, 57, 49, 41, 33]
    assert merged['linear_conv'] < expected


def test_benchmark_runs_and_reports_ratios(tiny_arch):
    tool = _load('benchmark_speed')
    model = MODELS.build(
        dict(
            type='ToMeVisionTransformer',
            arch=tiny_arch,
            img_size=32,
            patch_size=4))
    model.eval()
    res = tool.run_benchmark(
        model, ['none', 'merge20', 'r4'],
        batch_size=2,
        img_size=32,
        repeats=2,
        warmup=1,
        progress=False)
    assert list(res) == ['none', 'merge20', 'r4']
    assert res['none']['speedup'] == 1.0
    assert sum(res['merge20']['r_list']) == 20
    assert res['r4']['r_list'] == [4, 4, 4, 4]
    assert all(len(r['times_s']) == 2 for r in res.values())
    with pytest.raises(ValueError, match='setting'):
        tool.parse_setting('half', 4)
    overhead = tool.measure_merge_overhead(
        model, ['none', 'r4'], batch_size=2, img_size=32, repeats=1)
    assert list(overhead) == ['r4']
    assert 0 < overhead['r4']['fraction'] < 1
    # the instrumentation is removed again
    from mergemix_mm.models.tome import functional, mmpretrain_vit
    assert mmpretrain_vit.merge_tokens is functional.merge_tokens


def _write_config(tmp_path, backbone):
    path = tmp_path / 'cfg.py'
    path.write_text(
        "default_scope = 'mmpretrain'\n"
        "custom_imports = dict(imports=['mergemix_mm'])\n"
        f"model = dict(type='ImageClassifier', backbone={backbone!r}, "
        "head=dict(type='VisionTransformerClsHead', num_classes=10, "
        'in_channels=32))\n')
    return str(path)


def test_benchmark_writes_json_and_md_atomically(tmp_path, monkeypatch):
    """--out-json / --out-md land complete in new folders; a write that
    fails when the file is synced (disk full) keeps the previous file."""
    tool = _load('benchmark_speed')
    cfg = _write_config(
        tmp_path,
        dict(type='ToMeVisionTransformer', img_size=32, patch_size=4,
             arch=dict(embed_dims=32, num_layers=4, num_heads=2,
                       feedforward_channels=64)))
    out_json = tmp_path / 'a' / 'speed.json'
    out_md = tmp_path / 'b' / 'speed.md'
    argv = [cfg, '--settings', 'none', 'r4', '--repeats', '1', '--warmup',
            '0', '--batch-size', '1', '--out-json', str(out_json),
            '--out-md', str(out_md)]
    out = tool.main(argv)
    saved = json.loads(out_json.read_text())
    assert saved['results']['r4']['r_list'] == out['results']['r4'][
        'r_list'] == [4, 4, 4, 4]
    assert '| r4 |' in out_md.read_text()
    out_json.write_text('old')

    def full(fd):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(os, 'fsync', full)
    with pytest.raises(OSError, match='No space left'):
        tool.main(argv)
    assert out_json.read_text() == 'old'
    assert os.listdir(out_json.parent) == ['speed.json']


def test_benchmark_from_config(tmp_path):
    """The config's backbone is timed at the config's image size; its own
    merge schedule is off in the ``none`` setting."""
    import torch
    tool = _load('benchmark_speed')
    cfg = _write_config(
        tmp_path,
        dict(type='ToMeVisionTransformer', img_size=32, patch_size=4,
             merge_num=20, arch=dict(embed_dims=32, num_layers=4,
                                     num_heads=2, feedforward_channels=64)))
    out = tool.main([cfg, '--settings', 'none', 'r4', '--repeats', '1',
                     '--warmup', '0', '--batch-size', '1'])
    assert out['meta']['img_size'] == 32
    assert out['meta']['backend'] == 'mmpretrain'
    assert out['results']['r4']['r_list'] == [4, 4, 4, 4]
    model = tool.build_from_config(cfg)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        stock = tool.forward_fn(model, [0] * 4)(x)[0]
        with model.merging(False):
            assert torch.equal(stock, model(x)[0])
        assert not torch.allclose(stock, model(x)[0])  # merge_num=20


def test_benchmark_from_timm_config(tmp_path):
    tool = _load('benchmark_speed')
    cfg = _write_config(
        tmp_path,
        dict(type='ToMeTimmViT', model_name='vit_tiny_patch16_224',
             img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=2))
    out = tool.main([cfg, '--settings', 'none', 'r4', '--repeats', '1',
                     '--warmup', '0', '--batch-size', '1'])
    assert out['meta']['backend'] == 'timm'
    assert out['meta']['img_size'] == 32
    with pytest.raises(ValueError, match='--img-size 64 differs'):
        tool.main([cfg, '--img-size', '64'])


def test_benchmark_config_errors(tmp_path):
    tool = _load('benchmark_speed')
    with pytest.raises(FileNotFoundError, match='missing.py'):
        tool.main([str(tmp_path / 'missing.py')])
    cfg = _write_config(tmp_path, dict(type='ResNet', depth=18))
    with pytest.raises(ValueError, match='ResNet'):
        tool.main([cfg])


def _tiny_tome_backbones(depth):
    """A 32 px, patch 4 ``ToMeVisionTransformer`` and ``ToMeTimmViT`` config
    of ``depth`` blocks (65 tokens)."""
    return [
        dict(type='ToMeVisionTransformer', img_size=32, patch_size=4,
             arch=dict(embed_dims=32, num_layers=depth, num_heads=2,
                       feedforward_channels=64)),
        dict(type='ToMeTimmViT', model_name='vit_tiny_patch16_224',
             img_size=32, patch_size=4, embed_dim=32, depth=depth,
             num_heads=2),
    ]


@pytest.mark.parametrize('backbone', _tiny_tome_backbones(2))
def test_flops_of_a_config_at_its_own_image_size(tmp_path, backbone):
    """A config's FLOPs are counted at its backbone's image size (a 32 px
    model used to be counted at 224 px, 3137 tokens)."""
    tool = _load('get_flops')
    cfg = _write_config(tmp_path, backbone)
    rows = tool.main([cfg, '--settings', 'none', 'r4'])
    assert rows[0]['tokens'] == [65] * 3
    assert rows[1]['tokens'] == [65, 61, 57]
    if backbone['type'] == 'ToMeVisionTransformer':  # resized pos-embed
        assert tool.main([cfg, '--img-size', '64',
                          '--settings', 'none'])[0]['tokens'][0] == 257


def test_vit_img_size_of_every_supported_backbone():
    import timm
    from mmpretrain.models.backbones import VisionTransformer

    from mergemix_mm.models.tome import vit_img_size
    arch = dict(embed_dims=32, num_layers=1, num_heads=2,
                feedforward_channels=64)
    assert vit_img_size(VisionTransformer(
        arch=arch, img_size=(32, 48), patch_size=8)) == (32, 48)
    assert vit_img_size(MODELS.build(dict(
        type='ToMeVisionTransformer', arch=arch, img_size=40,
        patch_size=8))) == (40, 40)
    kw = dict(img_size=48, patch_size=8, embed_dim=32, depth=1, num_heads=2)
    assert vit_img_size(timm.create_model('vit_tiny_patch16_224',
                                          **kw)) == (48, 48)
    assert vit_img_size(MODELS.build(dict(
        type='ToMeTimmViT', model_name='vit_tiny_patch16_224',
        **kw))) == (48, 48)
    with pytest.raises(ValueError, match='ResNet'):
        vit_img_size(MODELS.build(dict(type='ResNet', depth=18)))


def test_tools_need_img_size_for_a_non_square_config(tmp_path):
    cfg = _write_config(
        tmp_path,
        dict(type='ToMeVisionTransformer', img_size=(32, 48), patch_size=8,
             arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                       feedforward_channels=64)))
    for name in ('get_flops', 'benchmark_speed'):
        with pytest.raises(ValueError, match=r'\(32, 48\); pass --img-size'):
            _load(name).main([cfg, '--settings', 'none'])
    rows = _load('get_flops').main([cfg, '--img-size', '32', '--settings',
                                    'none'])
    assert rows[0]['tokens'][0] == 17


@pytest.mark.parametrize('backbone', _tiny_tome_backbones(4))
def test_tools_use_the_config_backbone_schedule_options(tmp_path, backbone):
    """``merge<N>`` rows of a config follow its backbone's ``merge_inflect``
    / ``schedule_compat`` (they used the default spread), and the speed tool
    times the merged forwards with the backbone's ``prop_attn``."""
    import torch

    from mergemix_mm.models.tome import schedule_from_merge_num
    own = dict(backbone, merge_inflect=0.5, schedule_compat='openmixup',
               prop_attn=True)
    expected = schedule_from_merge_num(4, 20, inflect=0.5, compat='openmixup')
    assert expected == [2, 4, 6, 8]
    assert schedule_from_merge_num(4, 20) != expected
    flops = _load('get_flops')
    rows = flops.main([_write_config(tmp_path, own), '--settings', 'merge20'])
    assert rows[0]['tokens'] == [65, 63, 59, 53, 45]
    default_rows = flops.main(
        [_write_config(tmp_path, backbone), '--settings', 'merge20'])
    assert default_rows[0]['tokens'] == [65, 57, 52, 48, 45]

    speed = _load('benchmark_speed')
    cfg = _write_config(tmp_path, own)
    out = speed.main([cfg, '--settings', 'none', 'merge20', '--repeats',
                      '1', '--warmup', '0', '--batch-size', '1'])
    assert out['results']['merge20']['r_list'] == expected
    assert out['meta']['schedule_options'] == dict(inflect=0.5,
                                                   compat='openmixup')
    assert out['meta']['prop_attn'] is True
    model = speed.build_from_config(cfg)
    fwd = speed.forward_fn(model, expected, prop_attn=True)
    x = torch.randn(2, 3, 32, 32)
    from mergemix_mm.models.tome import tome_timm_forward, tome_vit_forward
    tome = tome_vit_forward if hasattr(model, 'layers') else tome_timm_forward
    with torch.no_grad():
        merged = fwd(x)
        prop = tome(model, x, expected, prop_attn=True,
                    trace_source=False).outs
        plain = tome(model, x, expected, prop_attn=False,
                     trace_source=False).outs
    first = (lambda o: o[0]) if isinstance(merged, tuple) else (lambda o: o)
    assert torch.equal(first(merged), first(prop))
    assert not torch.allclose(first(merged), first(plain))
