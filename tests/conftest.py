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


@pytest.fixture
def short_demo_cfg():
    """``short_demo_cfg(work_dir, max_epochs=1, indices=12)`` -> the README
    demo config cut to a few training iterations (batch 4, no validation,
    no test, constant lr, a checkpoint every ``max_epochs`` epochs)."""
    from mmengine.config import Config

    def make(work_dir, max_epochs: int = 1, indices: int = 12) -> Config:
        cfg = Config.fromfile(os.path.join(
            ROOT, 'configs', 'demo', 'vit-tiny_1xb64-mergemix_digits-32px.py'))
        cfg.train_dataloader.dataset.indices = indices
        cfg.train_dataloader.batch_size = 4
        cfg.train_dataloader.num_workers = 0
        cfg.train_dataloader.persistent_workers = False
        cfg.train_cfg = dict(by_epoch=True, max_epochs=max_epochs,
                             val_interval=max_epochs + 1)
        cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
        cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
        cfg.param_scheduler = []
        cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                            interval=max_epochs)
        cfg.work_dir = str(work_dir)
        return cfg

    return make
