# README command 2: MergeMix on the embedded digits (tiny ViT, 32 px, CPU).
# The mask comes from block 2 (of 4) of the model being trained, after a
# no-grad ToMe pass that merges 32 of the 64 patch tokens. Labels use the kept
# pixel fraction (lam_scale=False, as OpenMixup's ImageNet recipe); see
# configs/mergemix/digits/ for the re-scaled variants. No auxiliary loss
# (aux_loss=None): the official recipe's extra Mixup loss is the -auxmixup
# config of configs/mergemix/digits/.
_base_ = [
    '../_base_/models/vit-tiny-p4_digits-32px.py',
    '../_base_/datasets/digits_bs64_32px.py',
    '../_base_/schedules/digits_adamw_30e.py',
    '../_base_/default_runtime.py',
]
model = dict(
    train_cfg=dict(augments=[
        dict(type='MergeMix', alpha=1.0, attn_layer=2, merge_num=32,
             lam_scale=False, lam_reduction='batch')
    ]))
randomness = dict(seed=0, deterministic=False)
