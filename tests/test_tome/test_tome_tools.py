"""Tests for tools/analysis/get_flops.py and benchmark_speed.py."""
import importlib.util
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
