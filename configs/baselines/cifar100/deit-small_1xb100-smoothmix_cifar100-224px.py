# DeiT-S/16, CIFAR-100 at 224 px, batch 100, 200 epochs (OpenMixup recipe).
# SmoothMix (Gaussian mask, sigma in [0.25, 0.5] x side), own label weight =
# own visible area. OpenMixup gives the own label the partner's area; add
# compat='openmixup' to reproduce its numbers.
_base_ = [
    '../../_base_/models/deit-small-p16_mergemix.py',
    '../../_base_/datasets/cifar100_bs100_224px.py',
    '../../_base_/schedules/cifar100_adamw_200e.py',
    '../../_base_/default_runtime.py',
]
model = dict(
    train_cfg=dict(augments=[
        dict(type='SmoothMix', sigma_range=(0.25, 0.5)),
    ]))
