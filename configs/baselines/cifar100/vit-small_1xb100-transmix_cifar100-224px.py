# ViT-S/16, CIFAR-100 at 224 px, batch 100, 200 epochs.
# TransMix as OpenMixup runs it: Mixup 0.8 (p 0.2) or TransMix 1.0 (p 0.8),
# label = 0.5 area + 0.5 last-block CLS attention of the training forward,
# per sample, collapsed to the batch mean in the loss as OpenMixup does
# (lam_reduction='batch'; 'sample' keeps the TransMix paper's per-sample
# weights).
_base_ = [
    '../../_base_/models/vit-small-p16_mergemix.py',
    '../../_base_/datasets/cifar100_bs100_224px.py',
    '../../_base_/schedules/cifar100_adamw_200e.py',
    '../../_base_/default_runtime.py',
]
model = dict(
    head=dict(loss=dict(lam_reduction='batch')),
    train_cfg=dict(
        augments=[
            dict(type='Mixup', alpha=0.8),
            dict(type='TransMix', alpha=1.0, ratio=0.5),
        ],
        probs=[0.2, 0.8]))
# lr 5e-4 as OpenMixup's ViT-S recipe (the ViT-S MergeMix / Mixup configs).
optim_wrapper = dict(optimizer=dict(lr=5e-4))
