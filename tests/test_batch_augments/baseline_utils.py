"""Shared helpers of the baseline batch-augment tests (not a test module)."""
import copy
import random

import numpy as np
import torch
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

init_default_scope('mmpretrain')

#: Tiny ViT: 32 px, patch 4 (8x8 grid), 2 blocks of width 32.
TINY_VIT = dict(
    type='VisionTransformer',
    arch=dict(embed_dims=32, num_layers=2, num_heads=2,
              feedforward_channels=64),
    img_size=32,
    patch_size=4,
    out_type='cls_token')


def seed_all(seed: int = 0) -> None:
    """Seed every RNG the augments use (python, numpy, torch)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_bound(augment: dict, backbone: dict = TINY_VIT, **kwargs):
    """A ``MergeMixClassifier`` with one augment; returns ``(model, aug)``."""
    torch.manual_seed(0)
    model = MODELS.build(
        dict(
            type='MergeMixClassifier',
            backbone=copy.deepcopy(backbone),
            head=dict(type='MixLabelClsHead', num_classes=10,
                      in_channels=backbone['arch']['embed_dims']),
            data_preprocessor=dict(num_classes=10),
            train_cfg=dict(augments=[copy.deepcopy(augment)]),
            **kwargs))
    return model, model.data_preprocessor.batch_augments.augments[0]


def make_batch(n: int = 6, size: int = 32, seed: int = 0):
    """Normalised-looking images and int64 one-hot scores (as mmpretrain's
    preprocessor makes them)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=g)
    y = torch.nn.functional.one_hot(torch.arange(n) % 10, 10)
    return x, y


def check_contract(aug, x: torch.Tensor, y: torch.Tensor):
    """The batch-augment contract every baseline must meet.

    Shapes and dtypes kept, float scores whose rows sum to 1, no write to
    the caller's tensors, a plan consistent with the call, partners without
    fixed points, and a batch of one passing through unmixed.

    Returns:
        tuple: ``(mixed, scores, plan)`` of one seeded call.
    """
    x_before, y_before = x.clone(), y.clone()
    seed_all(1)
    mixed, scores = aug(x, y)
    assert torch.equal(x, x_before) and torch.equal(y, y_before)
    assert mixed.shape == x.shape and mixed.dtype == x.dtype
    assert scores.shape == y.shape and scores.dtype == torch.float32
    torch.testing.assert_close(scores.sum(1), torch.ones(len(x)))
    assert bool((scores >= 0).all())
    assert not torch.equal(mixed, x)

    seed_all(1)
    plan = aug.build_mix(x, y.float())
    index = plan['index']
    assert index.shape == (len(x), ) and index.dtype == torch.long
    assert not bool((index == torch.arange(len(x))).any())
    assert plan['lam'].shape == (len(x), )
    assert bool(((plan['lam'] >= 0) & (plan['lam'] <= 1)).all())
    assert plan['mask'].shape == (len(x), 1, *x.shape[-2:])
    torch.testing.assert_close(mixed, aug.apply_mix(x, x[index], plan))
    expected = plan['lam'][:, None] * y.float() + (
        1 - plan['lam'][:, None]) * y.float()[index]
    torch.testing.assert_close(scores, expected)

    one_x, one_y = x[:1], y[:1]
    out_x, out_y = aug(one_x, one_y)
    assert out_x is one_x
    torch.testing.assert_close(out_y, one_y.float())
    return mixed, scores, plan
