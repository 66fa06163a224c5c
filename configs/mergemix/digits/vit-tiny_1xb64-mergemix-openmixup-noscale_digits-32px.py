# MergeMix ablation on the embedded digits (benchmarks/accuracy_digits.py):
# lam_scale=False, compat='openmixup'. Tiny ViT (4 blocks), mask from block 2,
# ToMe pass merging 32 of 64 patch tokens, no auxiliary loss.
_base_ = [
    '../../_base_/models/vit-tiny-p4_digits-32px.py',
    '../../_base_/datasets/digits_bs64_32px.py',
    '../../_base_/schedules/digits_adamw_30e.py',
    '../../_base_/default_runtime.py',
]
model = dict(
    train_cfg=dict(augments=[
        dict(type='MergeMix', alpha=1.0, attn_layer=2, merge_num=32,
             lam_scale=False, lam_reduction='batch', compat='openmixup')
    ]))
train_dataloader = dict(batch_size=64)
randomness = dict(seed=0, deterministic=False)
