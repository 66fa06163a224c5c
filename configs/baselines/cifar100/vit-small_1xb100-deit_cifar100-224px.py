# ViT-S/16, CIFAR-100 at 224 px, batch 100, 200 epochs.
# DeiT recipe: Mixup 0.8 or CutMix 1.0, 50/50 per batch.
_base_ = [
    '../../_base_/models/vit-small-p16_mergemix.py',
    '../../_base_/datasets/cifar100_bs100_224px.py',
    '../../_base_/schedules/cifar100_adamw_200e.py',
    '../../_base_/default_runtime.py',
]
model = dict(train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]))
# lr 5e-4 as OpenMixup's ViT-S recipe (the ViT-S MergeMix / Mixup configs).
optim_wrapper = dict(optimizer=dict(lr=5e-4))
