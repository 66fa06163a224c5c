# OpenMixup ViT recipe on CIFAR-100 (ALGORITHM.md §8.2): AdamW lr 1e-3 for
# batch 100 (DeiT-S), wd 0.05 (none on norm/bias/cls_token/pos_embed),
# grad-clip 5, 20 warm-up epochs from 1e-5 x lr, cosine to min_lr, 200 epochs,
# scheduled per iteration. As mmcv's CosineAnnealing with a linear warm-up
# (OpenMixup's lr_config), the cosine spans the whole run (begin=0) and the
# warm-up scales it: the two schedulers overlap for the first 20 epochs.
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05, eps=1e-8,
                   betas=(0.9, 0.999)),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
        }),
    clip_grad=dict(max_norm=5.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-5, by_epoch=True, begin=0, end=20,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=0,
         end=200, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=200, val_interval=10)
val_cfg = dict()
test_cfg = dict()
# 1 GPU x 100 images per batch.
auto_scale_lr = dict(base_batch_size=100)
