# Tiny ViT (patch 4), embedded UCI digits at 32 px, CPU demo.
# ResizeMix with the paper's / OpenMixup's tau law (CIFAR config:
# tau ~ Beta(1, 1) redrawn in [0.1, 0.8], bilinear).
_base_ = [
    '../../_base_/models/vit-tiny-p4_digits-32px.py',
    '../../_base_/datasets/digits_bs64_32px.py',
    '../../_base_/schedules/digits_adamw_30e.py',
    '../../_base_/default_runtime.py',
]
model = dict(train_cfg=dict(augments=[
        dict(
            type='ResizeMixTau',
            scope=(0.1, 0.8),
            use_alpha=True,
            alpha=1.0,
            interpolation='bilinear'),
    ]))
randomness = dict(seed=0, deterministic=False)
