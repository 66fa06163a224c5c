_base_ = [
    '../_base_/models/deit-small-p16_mergemix.py',
    '../_base_/datasets/cifar100_bs100_224px.py',
    '../_base_/schedules/cifar100_adamw_200e.py',
    '../_base_/default_runtime.py',
]
# DeiT-S at 600 epochs: the derived recipe of
# deit-small-p16_1xb100-mergemix-600e_cifar100-224px.py (DeiT-T's 600-epoch
# recipe with the DeiT-S model).
# DeiT recipe: Mixup(0.8) or CutMix(1.0), chosen 50/50 per batch.
model = dict(train_cfg=dict(augments=[
    dict(type='Mixup', alpha=0.8),
    dict(type='CutMix', alpha=1.0)
], probs=None))

# Everything a result depends on, in this file:
# 1 GPU(s) x 100 images per GPU, 600 epochs, lr 0.001 (AdamW, wd 0.05).
train_dataloader = dict(batch_size=100)
optim_wrapper = dict(optimizer=dict(lr=0.001))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-5, by_epoch=True, begin=0, end=20,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-06, by_epoch=True, begin=0,
         end=600, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=600)
auto_scale_lr = dict(base_batch_size=100)
randomness = dict(seed=0, deterministic=False)
