# DeiT-S/16, CIFAR-100 at 224 px, batch 100, 200 epochs (OpenMixup recipe).
# SaliencyMix, alpha 0.2 (OpenMixup CIFAR DeiT-S config); spectral-residual
# saliency, one box for the batch (from the first partner) as OpenMixup
# (per_sample=True: one box per pair).
_base_ = [
    '../../_base_/models/deit-small-p16_mergemix.py',
    '../../_base_/datasets/cifar100_bs100_224px.py',
    '../../_base_/schedules/cifar100_adamw_200e.py',
    '../../_base_/default_runtime.py',
]
model = dict(
    train_cfg=dict(
        augments=[dict(type='SaliencyMix', alpha=0.2, per_sample=False)]))
