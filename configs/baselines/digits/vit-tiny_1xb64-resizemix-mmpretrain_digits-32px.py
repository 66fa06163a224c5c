# Tiny ViT (patch 4), embedded UCI digits at 32 px, CPU demo.
# mmpretrain's own ResizeMix law (pasted area ~ 1 - lam in [0.2, 0.9]).
_base_ = [
    '../../_base_/models/vit-tiny-p4_digits-32px.py',
    '../../_base_/datasets/digits_bs64_32px.py',
    '../../_base_/schedules/digits_adamw_30e.py',
    '../../_base_/default_runtime.py',
]
model = dict(
    train_cfg=dict(augments=[
        dict(type='ResizeMix', alpha=1.0, lam_min=0.1, lam_max=0.8),
    ]))
randomness = dict(seed=0, deterministic=False)
