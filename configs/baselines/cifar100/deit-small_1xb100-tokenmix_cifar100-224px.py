# DeiT-S/16, CIFAR-100 at 224 px, batch 100, 200 epochs (OpenMixup recipe).
# TokenMix (block mask, partner ratio 1 - Beta(1, 1) per batch + one row,
# attention label; p 0.9) or Mixup 1.0 (p 0.1), OpenMixup CIFAR config.
_base_ = [
    '../../_base_/models/deit-small-p16_mergemix.py',
    '../../_base_/datasets/cifar100_bs100_224px.py',
    '../../_base_/schedules/cifar100_adamw_200e.py',
    '../../_base_/default_runtime.py',
]
model = dict(train_cfg=dict(
    augments=[
        dict(type='TokenMix', mask_type='block', alpha=1.0),
        dict(type='Mixup', alpha=1.0),
    ],
    probs=[0.9, 0.1]))
