# Tiny ViT (patch 4), embedded UCI digits at 32 px, CPU demo.
# MixPro (MaskMix cells of 8 px = 2x2 patches + progressive attention
# labels, p 0.8) or Mixup 1.0 (p 0.2), OpenMixup CIFAR config.
_base_ = [
    '../../_base_/models/vit-tiny-p4_digits-32px.py',
    '../../_base_/datasets/digits_bs64_32px.py',
    '../../_base_/schedules/digits_adamw_30e.py',
    '../../_base_/default_runtime.py',
]
model = dict(train_cfg=dict(
    augments=[
        dict(type='MixPro', alpha=1.0, mask_patch_size=8),
        dict(type='Mixup', alpha=1.0),
    ],
    probs=[0.8, 0.2]))
randomness = dict(seed=0, deterministic=False)
