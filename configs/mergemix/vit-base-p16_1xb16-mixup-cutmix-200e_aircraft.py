_base_ = [
    '../_base_/models/vit-base-p16_mergemix.py',
    '../_base_/datasets/aircraft_bs16_224px.py',
    '../_base_/schedules/finegrained_adamw_200e.py',
    '../_base_/default_runtime.py',
]
# Fine-tunes from ImageNet weights as in the paper: pass --cfg-options
# load_from=PATH, an mmpretrain-format checkpoint (see
# configs/mergemix/README.md); without it, this trains from scratch.
# DeiT recipe: Mixup(0.8) or CutMix(1.0), chosen 50/50 per batch.
model = dict(
    head=dict(num_classes=100),
    train_cfg=dict(
        augments=[
            dict(type='Mixup', alpha=0.8),
            dict(type='CutMix', alpha=1.0)
        ],
        probs=None))

# Everything a result depends on, in this file:
# 1 GPU(s) x 16 images per GPU, 200 epochs, lr 1e-05 (AdamW, wd 0.05).
train_dataloader = dict(batch_size=16)
optim_wrapper = dict(optimizer=dict(lr=1e-05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-5, by_epoch=True, begin=0, end=20,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-06, by_epoch=True, begin=0,
         end=200, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=200)
auto_scale_lr = dict(base_batch_size=16)
randomness = dict(seed=0, deterministic=False)
