# ViT-S/16, CIFAR-100 at 224 px, batch 100, 200 epochs.
# MixPro (MaskMix cells of 64 px + progressive attention labels, p 0.8)
# or Mixup 1.0 (p 0.2), OpenMixup CIFAR config.
_base_ = [
    '../../_base_/models/vit-small-p16_mergemix.py',
    '../../_base_/datasets/cifar100_bs100_224px.py',
    '../../_base_/schedules/cifar100_adamw_200e.py',
    '../../_base_/default_runtime.py',
]
model = dict(train_cfg=dict(
    augments=[
        dict(type='MixPro', alpha=1.0, mask_patch_size=64),
        dict(type='Mixup', alpha=1.0),
    ],
    probs=[0.8, 0.2]))
# lr 5e-4 as OpenMixup's ViT-S recipe (the ViT-S MergeMix / Mixup configs).
optim_wrapper = dict(optimizer=dict(lr=5e-4))
