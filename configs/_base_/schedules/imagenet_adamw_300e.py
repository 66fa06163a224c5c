# DeiT ImageNet recipe as in OpenMixup's MergeMix config (ALGORITHM.md §8.2):
# 4 GPUs x 256, AdamW lr 1e-3, wd 0.05, 5 warm-up epochs, cosine to 1e-5 over
# all 300 epochs (see cifar100_adamw_200e.py).
_base_ = ['./cifar100_adamw_200e.py']
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-5, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0,
         end=300, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=10)
auto_scale_lr = dict(base_batch_size=1024)
