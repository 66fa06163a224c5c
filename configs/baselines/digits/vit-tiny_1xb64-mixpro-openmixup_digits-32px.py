# Tiny ViT (patch 4), embedded UCI digits at 32 px, CPU demo.
# MixPro as OpenMixup runs it (compat='openmixup'): PAL attention from a
# no-grad pass on the clean batch, 0.1-smoothed target in the progressive
# factor, cell-count area, batch-mean label weight, partners may be the
# sample itself. MixPro 1.0 (cells of 8 px, p 0.8) or Mixup 1.0 (p 0.2).
_base_ = ['./vit-tiny_1xb64-mixpro_digits-32px.py']
# OpenMixup's baseline configs spell the backbone's drop-path argument
# `drop_path` (docs/design/ALGORITHM.md A10), so its MixPro numbers were
# trained without stochastic depth: drop path 0 here too (the other baselines
# keep 0.1, like MergeMix).
model = dict(
    backbone=dict(drop_path_rate=0.0),
    train_cfg=dict(
        augments=[
            dict(type='MixPro', alpha=1.0, mask_patch_size=8,
                 compat='openmixup'),
            dict(type='Mixup', alpha=1.0),
        ],
        probs=[0.8, 0.2]))
