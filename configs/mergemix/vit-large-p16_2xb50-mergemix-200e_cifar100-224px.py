_base_ = [
    '../_base_/models/vit-large-p16_mergemix.py',
    '../_base_/datasets/cifar100_bs100_224px.py',
    '../_base_/schedules/cifar100_adamw_200e.py',
    '../_base_/default_runtime.py',
]
# MergeMix, official recipe (cifar100/.../vit_l_mergemix_18th_tome98 in
# OpenMixup; ALGORITHM.md §8.2).
model = dict(
    backbone=dict(merge_num=98),  # as OpenMixup sets it; inert here:
    # with tome_in_mix=True the mask pass merges with the augment's merge_num
    # tome_in_mix=True: merging only in the mask pass; training forwards and
    # test un-merged
    tome_in_mix=True,
    aux_loss='mixup',  # + Mixup(alpha=0.8) loss on a second mixed copy
    aux_alpha=0.8,
    train_cfg=dict(augments=[
        dict(type='MergeMix', alpha=1.0, attn_layer=17, merge_num=98,
             lam_scale=True, lam_reduction='batch', lam_margin=0.03)
    ]))

# Everything a result depends on, in this file:
# 2 GPU(s) x 50 images per GPU, 200 epochs, lr 0.0002 (AdamW, wd 0.05).
train_dataloader = dict(batch_size=50)
optim_wrapper = dict(
    # fp16 as in the official config (GPU only; remove on CPU)
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(lr=0.0002))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-5, by_epoch=True, begin=0, end=20,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-06, by_epoch=True, begin=0,
         end=200, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=200)
auto_scale_lr = dict(base_batch_size=100)
randomness = dict(seed=0, deterministic=False)
