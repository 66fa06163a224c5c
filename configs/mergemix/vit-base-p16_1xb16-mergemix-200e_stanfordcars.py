_base_ = [
    '../_base_/models/vit-base-p16_mergemix.py',
    '../_base_/datasets/stanfordcars_bs16_224px.py',
    '../_base_/schedules/finegrained_adamw_200e.py',
    '../_base_/default_runtime.py',
]
# Fine-tunes from ImageNet weights as in the paper: pass --cfg-options
# load_from=PATH, an mmpretrain-format checkpoint (see
# configs/mergemix/README.md); without it, this trains from scratch.
# MergeMix, official recipe (cars/.../vit_b_mergemix_l12_a1_tm98_s in
# OpenMixup; ALGORITHM.md §8.2).
model = dict(
    head=dict(num_classes=196),
    backbone=dict(merge_num=98),  # as OpenMixup sets it; inert here:
    # with tome_in_mix=True the mask pass merges with the augment's merge_num
    # tome_in_mix=True: merging only in the mask pass; training forwards and
    # test un-merged
    tome_in_mix=True,
    aux_loss='mixup',  # + Mixup(alpha=0.8) loss on a second mixed copy
    aux_alpha=0.8,
    train_cfg=dict(augments=[
        dict(type='MergeMix', alpha=1.0, attn_layer=11, merge_num=98,
             lam_scale=False, lam_reduction='batch', lam_margin=-1.0)
    ]))

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
