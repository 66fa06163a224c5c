"""Mixed-sample views: exactly what the augment does in training, for
MergeMix and every baseline config; partner / mask estimation for augments
without ``build_mix``; denormalisation; PNG grids."""
import copy
import glob
import random
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from analysis_utils import ROOT, assert_png
from mmengine.config import Config
from mmpretrain.registry import BATCH_AUGMENTS, MODELS

from mergemix_mm.analysis import (denormalize, describe_mix, estimate_partners,
                                  plot_mix_grid)

DIGITS_CONFIGS = sorted(
    glob.glob(osp.join(ROOT, 'configs', 'baselines', 'digits', '*.py')) +
    glob.glob(osp.join(ROOT, 'configs', 'mergemix', 'digits', '*.py')) +
    glob.glob(osp.join(ROOT, 'configs', 'demo', '*.py')))
DIGITS_CONFIGS = [c for c in DIGITS_CONFIGS if '-vanilla_' not in c]
# Drawn as well (plotting is the slow part): an estimated mask (mmpretrain's
# CutMix), partner saliency, own attention map with a re-scored label.
PLOTTED = ('-cutmix_', '-attentivecutmix_', '-tokenmix_', '-transmix_')


def _seed(seed=0):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _digits_batch(n=6):
    from mergemix_mm.datasets.digits import load_digits_images
    images, labels = load_digits_images('train', img_size=32)
    x = torch.from_numpy(np.ascontiguousarray(images[:n])).float()
    if x.ndim == 3:
        x = x[:, None].expand(-1, 3, -1, -1)
    elif x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    x = (x - 127.5) / 127.5
    return x.contiguous(), torch.as_tensor(labels[:n]).long()


def _model_of(config):
    cfg = Config.fromfile(config)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    torch.manual_seed(0)
    return MODELS.build(model_cfg).eval()


@pytest.mark.parametrize(
    'config',
    DIGITS_CONFIGS,
    ids=[
        osp.basename(osp.dirname(c)) + '/' +
        osp.basename(c)[len('vit-tiny_1xb64-'):-len('_digits-32px.py')]
        for c in DIGITS_CONFIGS
    ])
def test_view_is_what_training_does(config, tmp_path):
    """For every augment of every digits config, the drawn mixed images are
    those the augment produces in a training step with the same RNG state,
    and the soft labels too (unless re-scored from the training forward)."""
    model = _model_of(config)
    augments = [
        a for a in model.data_preprocessor.batch_augments.augments
        if a is not None
    ]
    x, y = _digits_batch(6)
    onehot = F.one_hot(y, 10).float()
    for k, aug in enumerate(augments):
        _seed(k)
        with torch.no_grad():
            ref_mixed, ref_scores = aug(x.clone(), onehot.clone())
        _seed(k)
        view = describe_mix(aug, x, y, 10, model)
        torch.testing.assert_close(view.mixed, ref_mixed)
        if not getattr(aug, 'needs_train_forward', False):
            torch.testing.assert_close(view.scores, ref_scores)
        torch.testing.assert_close(view.scores.sum(1), torch.ones(6))
        assert view.index.shape == (6, )
        assert bool(((view.index >= 0) & (view.index < 6)).all())
        if view.mask is not None and not view.estimated:
            assert view.mask.shape == (6, 1, 32, 32)
        if any(key in config for key in PLOTTED):
            path = str(tmp_path / f'{k}.png')
            plot_mix_grid(view, path, model.data_preprocessor, max_rows=3)
            assert_png(path)


def test_mergemix_view_mask_matches_saliency_top_k(tiny_vit_cfg):
    model = MODELS.build(
        dict(type='MergeMixClassifier',
             backbone=tiny_vit_cfg,
             head=dict(type='LinearClsHead', num_classes=5, in_channels=32),
             train_cfg=dict(augments=[
                 dict(type='MergeMix',
                      attn_layer=1,
                      merge_num=4,
                      lam_scale=False,
                      lam_reduction='sample')
             ])))
    aug = model.data_preprocessor.batch_augments.augments[0]
    model.eval()
    _seed(1)
    x = torch.randn(4, 3, 32, 32)
    y = torch.tensor([0, 1, 2, 3])
    view = describe_mix(aug, x, y, 5, model)
    assert view.saliency is not None and view.saliency.shape == (4, 4, 4)
    assert view.saliency_of == 'own'
    # the kept (own) patches are the most salient ones of each image
    own = view.mask[:, 0, ::8, ::8].bool().flatten(1)
    sal = view.saliency.flatten(1)
    for i in range(4):
        k = int(own[i].sum())
        if 0 < k < 16:
            assert sal[i][own[i]].min() >= sal[i][~own[i]].max()
    torch.testing.assert_close(view.mixed,
                               view.mask * x + (1 - view.mask) * x[view.index])
    torch.testing.assert_close(view.lam, view.mask.flatten(1).mean(1))


def test_estimate_partners_recovers_mixup_and_cutmix():
    _seed(0)
    x = torch.randn(5, 3, 16, 16)
    y = torch.tensor([0, 1, 2, 3, 4])
    index = torch.tensor([3, 0, 4, 1, 2])
    onehot = F.one_hot(y, 5).float()
    mixed = 0.3 * x + 0.7 * x[index]
    scores = 0.3 * onehot + 0.7 * onehot[index]
    est, mask = estimate_partners(x, mixed, y, scores)
    assert est.tolist() == index.tolist()
    torch.testing.assert_close(mask, torch.full_like(mask, 0.3))
    box = torch.ones(5, 1, 16, 16)
    box[..., 4:12, 2:9] = 0
    mixed = box * x + (1 - box) * x[index]
    est, mask = estimate_partners(x, mixed, y, scores)
    assert est.tolist() == index.tolist()
    torch.testing.assert_close(mask, box)


def test_fallback_does_not_touch_inputs_and_reads_labels():
    # mmpretrain's CutMix writes into its input; the view must not
    aug = BATCH_AUGMENTS.build(dict(type='CutMix', alpha=1.0))
    _seed(2)
    x = torch.randn(6, 3, 16, 16)
    original = x.clone()
    y = torch.arange(6)
    view = describe_mix(aug, x, y, 6)
    assert torch.equal(x, original)
    assert view.estimated
    moved = view.index != torch.arange(6)
    own_w = view.scores.gather(1, y[:, None])[:, 0]
    torch.testing.assert_close(view.lam[moved], own_w[moved])


def test_batch_of_one_is_refused():
    aug = BATCH_AUGMENTS.build(dict(type='Mixup', alpha=1.0))
    with pytest.raises(ValueError, match='B >= 2'):
        describe_mix(aug, torch.randn(1, 3, 8, 8), torch.tensor([0]), 2)


def test_denormalize_inverts_the_preprocessor():
    dp = MODELS.build(
        dict(type='ClsDataPreprocessor',
             mean=[120., 110., 100.],
             std=[60., 50., 40.]))
    raw = torch.randint(0, 256, (2, 3, 8, 8)).float()
    norm = (raw - dp.mean) / dp.std
    torch.testing.assert_close(denormalize(norm, dp), raw / 255)
    torch.testing.assert_close(denormalize(norm, dp, bgr=True),
                               (raw / 255).flip(1))
    # no preprocessor: a [0, 1] tensor stays as it is
    img = torch.rand(1, 3, 4, 4)
    torch.testing.assert_close(denormalize(img), img)
