# Tiny ViT (patch 4), embedded UCI digits at 32 px, CPU demo.
# TransMix with OpenMixup's augments: Mixup 0.8 (p 0.2) or TransMix 1.0
# (p 0.8), label = 0.5 area + 0.5 last-block CLS attention of the training
# forward, per sample as in the TransMix paper (OpenMixup's loss averages it
# over the batch: head=dict(loss=dict(lam_reduction='batch'))).
_base_ = [
    '../../_base_/models/vit-tiny-p4_digits-32px.py',
    '../../_base_/datasets/digits_bs64_32px.py',
    '../../_base_/schedules/digits_adamw_30e.py',
    '../../_base_/default_runtime.py',
]
model = dict(train_cfg=dict(
    augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='TransMix', alpha=1.0, ratio=0.5),
    ],
    probs=[0.2, 0.8]))
randomness = dict(seed=0, deterministic=False)
