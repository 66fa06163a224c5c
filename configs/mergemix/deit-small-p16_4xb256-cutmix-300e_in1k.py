_base_ = [
    '../_base_/models/deit-small-p16_mergemix.py',
    '../_base_/datasets/imagenet_bs256_swin_224.py',
    '../_base_/schedules/imagenet_adamw_300e.py',
    '../_base_/default_runtime.py',
]
# CutMix alpha 0.2, as OpenMixup's ImageNet DeiT-S CutMix run behind the
# paper's Table 3 row (configs/classification/imagenet/mixups/deit/
# deit_small/deit_small_smooth_cutmix_a0_2_4xb256_ep300.py).
model = dict(
    head=dict(num_classes=1000),
    train_cfg=dict(augments=[dict(type='CutMix', alpha=0.2)]))

# Everything a result depends on, in this file:
# 4 GPU(s) x 256 images per GPU, 300 epochs, lr 0.001 (AdamW, wd 0.05).
train_dataloader = dict(batch_size=256)
optim_wrapper = dict(
    # fp16 as in the official config (GPU only; remove on CPU)
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(lr=0.001))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-5, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-05, by_epoch=True, begin=0,
         end=300, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=300)
auto_scale_lr = dict(base_batch_size=1024)
randomness = dict(seed=0, deterministic=False)
