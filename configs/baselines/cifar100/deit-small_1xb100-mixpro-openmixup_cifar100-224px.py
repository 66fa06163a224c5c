# DeiT-S/16, CIFAR-100 at 224 px, batch 100, 200 epochs (OpenMixup recipe).
# MixPro as OpenMixup runs it (compat='openmixup', the variant behind its
# published MixPro numbers): PAL attention from a no-grad pass on the clean
# batch, 0.1-smoothed target in the progressive factor, cell-count area,
# batch-mean label weight, partners may be the sample itself. MixPro 1.0
# (p 0.8) or Mixup 1.0 (p 0.2), as the MixPro config.
_base_ = ['./deit-small_1xb100-mixpro_cifar100-224px.py']
# OpenMixup's baseline configs spell the backbone's drop-path argument
# `drop_path` (docs/design/ALGORITHM.md A10), so its MixPro numbers were
# trained without stochastic depth: drop path 0 here too (the other baselines
# keep 0.1, like MergeMix).
model = dict(
    backbone=dict(drop_path_rate=0.0),
    train_cfg=dict(
        augments=[
            dict(type='MixPro', alpha=1.0, mask_patch_size=64,
                 compat='openmixup'),
            dict(type='Mixup', alpha=1.0),
        ],
        probs=[0.8, 0.2]))
