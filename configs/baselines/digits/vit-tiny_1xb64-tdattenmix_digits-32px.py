# Tiny ViT (patch 4), embedded UCI digits at 32 px, CPU demo.
# TdAttenMix (p 0.5) or Mixup 0.8 (p 0.5): the official switch_prob.
_base_ = [
    '../../_base_/models/vit-tiny-p4_digits-32px.py',
    '../../_base_/datasets/digits_bs64_32px.py',
    '../../_base_/schedules/digits_adamw_30e.py',
    '../../_base_/default_runtime.py',
]
model = dict(train_cfg=dict(
    augments=[
        dict(type='TdAttenMix', top_down_weight=0.5, ratio=0.5),
        dict(type='Mixup', alpha=0.8),
    ],
    probs=[0.5, 0.5]))
randomness = dict(seed=0, deterministic=False)
