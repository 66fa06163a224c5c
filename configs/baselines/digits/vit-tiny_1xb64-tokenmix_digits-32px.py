# Tiny ViT (patch 4), embedded UCI digits at 32 px, CPU demo.
# TokenMix (block mask, ratio 0.5 + one row, attention label; p 0.9) or
# Mixup 1.0 (p 0.1), OpenMixup's CIFAR config with a fixed ratio (OpenMixup
# draws it as 1 - Beta(1, 1): TokenMix alpha=1.0).
_base_ = [
    '../../_base_/models/vit-tiny-p4_digits-32px.py',
    '../../_base_/datasets/digits_bs64_32px.py',
    '../../_base_/schedules/digits_adamw_30e.py',
    '../../_base_/default_runtime.py',
]
model = dict(train_cfg=dict(
    augments=[
        dict(type='TokenMix', mask_type='block', mask_ratio=0.5),
        dict(type='Mixup', alpha=1.0),
    ],
    probs=[0.9, 0.1]))
randomness = dict(seed=0, deterministic=False)
