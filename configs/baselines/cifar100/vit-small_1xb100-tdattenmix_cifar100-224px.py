# ViT-S/16, CIFAR-100 at 224 px, batch 100, 200 epochs.
# TdAttenMix (p 0.5) or Mixup 0.8 (p 0.5): the official switch_prob.
_base_ = [
    '../../_base_/models/vit-small-p16_mergemix.py',
    '../../_base_/datasets/cifar100_bs100_224px.py',
    '../../_base_/schedules/cifar100_adamw_200e.py',
    '../../_base_/default_runtime.py',
]
model = dict(train_cfg=dict(
    augments=[
        dict(type='TdAttenMix', top_down_weight=0.5, ratio=0.5),
        dict(type='Mixup', alpha=0.8),
    ],
    probs=[0.5, 0.5]))
# lr 5e-4 as OpenMixup's ViT-S recipe (the ViT-S MergeMix / Mixup configs).
optim_wrapper = dict(optimizer=dict(lr=5e-4))
