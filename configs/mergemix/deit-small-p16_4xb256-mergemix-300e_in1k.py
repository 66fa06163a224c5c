_base_ = [
    '../_base_/models/deit-small-p16_mergemix.py',
    '../_base_/datasets/imagenet_bs256_swin_224.py',
    '../_base_/schedules/imagenet_adamw_300e.py',
    '../_base_/default_runtime.py',
]
# MergeMix, official recipe
# (imagenet/mergemix/.../deit_small_merge49_l9_s0_a1_4x256_ep300 in OpenMixup;
# ALGORITHM.md §8.2).
model = dict(
    head=dict(num_classes=1000),
    backbone=dict(merge_num=49),  # as OpenMixup sets it; inert here:
    # with tome_in_mix=True the mask pass merges with the augment's merge_num
    # tome_in_mix=True: merging only in the mask pass; training forwards and
    # test un-merged
    tome_in_mix=True,
    aux_loss='mixup',  # + Mixup(alpha=0.8) loss on a second mixed copy
    aux_alpha=0.8,
    train_cfg=dict(augments=[
        dict(type='MergeMix', alpha=1.0, attn_layer=11, merge_num=49,
             lam_scale=False, lam_reduction='batch', lam_margin=-1.0)
    ]))

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
