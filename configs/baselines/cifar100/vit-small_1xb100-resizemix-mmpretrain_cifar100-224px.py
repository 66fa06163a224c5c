# ViT-S/16, CIFAR-100 at 224 px, batch 100, 200 epochs.
# mmpretrain's own ResizeMix law (pasted area ~ 1 - lam in [0.2, 0.9]).
_base_ = [
    '../../_base_/models/vit-small-p16_mergemix.py',
    '../../_base_/datasets/cifar100_bs100_224px.py',
    '../../_base_/schedules/cifar100_adamw_200e.py',
    '../../_base_/default_runtime.py',
]
model = dict(
    train_cfg=dict(augments=[
        dict(type='ResizeMix', alpha=1.0, lam_min=0.1, lam_max=0.8),
    ]))
# lr 5e-4 as OpenMixup's ViT-S recipe (the ViT-S MergeMix / Mixup configs).
optim_wrapper = dict(optimizer=dict(lr=5e-4))
