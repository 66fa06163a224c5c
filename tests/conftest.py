import os
import sys

import pytest
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import mergemix_mm  # noqa: E402,F401  (registers modules, applies compat)


@pytest.fixture
def repo_root():
    return ROOT


class GraphRecorder:
    """A ``torch.compile`` backend that keeps the example inputs of every
    graph Dynamo captures and runs the graph with the stock kernels, so
    compile tests need no C++ toolchain and match eager mode exactly."""

    def __init__(self):
        self.graphs = []

    def __call__(self, gm, example_inputs):
        self.graphs.append(list(example_inputs))
        return gm.forward


@pytest.fixture
def dynamo_graphs():
    """A fresh :class:`GraphRecorder`; Dynamo's caches are reset before and
    after the test."""
    torch._dynamo.reset()
    yield GraphRecorder()
    torch._dynamo.reset()


@pytest.fixture
def tiny_vit_cfg():
    """A tiny mmpretrain ViT config (32 px, patch 8, 2 blocks, width 32)."""
    return dict(
        type='VisionTransformer',
        arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                  feedforward_channels=64),
        img_size=32,
        patch_size=8,
        out_type='cls_token')
