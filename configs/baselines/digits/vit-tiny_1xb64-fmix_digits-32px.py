# Tiny ViT (patch 4), embedded UCI digits at 32 px, CPU demo.
# FMix, alpha 1.0, decay power 3.
_base_ = [
    '../../_base_/models/vit-tiny-p4_digits-32px.py',
    '../../_base_/datasets/digits_bs64_32px.py',
    '../../_base_/schedules/digits_adamw_30e.py',
    '../../_base_/default_runtime.py',
]
model = dict(
    train_cfg=dict(augments=[
        dict(type='FMix', alpha=1.0, decay_power=3.0),
    ]))
randomness = dict(seed=0, deterministic=False)
