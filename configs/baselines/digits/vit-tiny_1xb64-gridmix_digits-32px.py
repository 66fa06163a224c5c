# Tiny ViT (patch 4), embedded UCI digits at 32 px, CPU demo.
# GridMix with OpenMixup's CIFAR arguments.
_base_ = [
    '../../_base_/models/vit-tiny-p4_digits-32px.py',
    '../../_base_/datasets/digits_bs64_32px.py',
    '../../_base_/schedules/digits_adamw_30e.py',
    '../../_base_/default_runtime.py',
]
model = dict(train_cfg=dict(augments=[
        dict(
            type='GridMix',
            alpha=1.0,
            n_holes=(2, 6),
            hole_aspect_ratio=1.0,
            cut_area_ratio=(0.5, 1.0),
            cut_aspect_ratio=(0.5, 2.0)),
    ]))
randomness = dict(seed=0, deterministic=False)
