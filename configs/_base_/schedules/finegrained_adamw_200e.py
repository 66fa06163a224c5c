# Fine-grained fine-tuning recipe of OpenMixup's MergeMix configs (CUB-200,
# Stanford Cars, FGVC-Aircraft): 1 GPU x 16, AdamW lr 1e-5, wd 0.05,
# 20 warm-up epochs, cosine over all 200 epochs. The paper fine-tunes from
# ImageNet
# weights: set `load_from` or `model.backbone.init_cfg` (Pretrained).
_base_ = ['./cifar100_adamw_200e.py']
optim_wrapper = dict(optimizer=dict(lr=1e-5))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-5, by_epoch=True, begin=0, end=20,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-7, by_epoch=True, begin=0,
         end=200, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=200, val_interval=10)
auto_scale_lr = dict(base_batch_size=16)
