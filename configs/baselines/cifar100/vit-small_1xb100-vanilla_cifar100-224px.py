# ViT-S/16, CIFAR-100 at 224 px, batch 100, 200 epochs.
# No mixing (plain label-smoothed CE).
_base_ = [
    '../../_base_/models/vit-small-p16_mergemix.py',
    '../../_base_/datasets/cifar100_bs100_224px.py',
    '../../_base_/schedules/cifar100_adamw_200e.py',
    '../../_base_/default_runtime.py',
]
model = dict(train_cfg=dict(augments=[]))
# lr 5e-4 as OpenMixup's ViT-S recipe (the ViT-S MergeMix / Mixup configs).
optim_wrapper = dict(optimizer=dict(lr=5e-4))
