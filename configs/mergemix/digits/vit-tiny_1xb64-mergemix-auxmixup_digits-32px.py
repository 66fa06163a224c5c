# MergeMix ablation on the embedded digits (benchmarks/accuracy_digits.py):
# the demo's MergeMix (paper-intent attention, lam_scale=False) plus the
# official recipe's auxiliary Mixup(alpha=0.8) loss on a second mixed copy
# (ALGORITHM.md §10 A4; the two losses are back-propagated one after the
# other).
_base_ = [
    '../../_base_/models/vit-tiny-p4_digits-32px.py',
    '../../_base_/datasets/digits_bs64_32px.py',
    '../../_base_/schedules/digits_adamw_30e.py',
    '../../_base_/default_runtime.py',
]
model = dict(
    aux_loss='mixup',
    aux_alpha=0.8,
    train_cfg=dict(augments=[
        dict(type='MergeMix', alpha=1.0, attn_layer=2, merge_num=32,
             lam_scale=False, lam_reduction='batch', compat=None)
    ]))
train_dataloader = dict(batch_size=64)
randomness = dict(seed=0, deterministic=False)
