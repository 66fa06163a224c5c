# ViT-S/16 as in OpenMixup's CIFAR benchmark (mmpretrain arch 's':
# 8 blocks, width 768, 8 heads), 224 px, 100 classes.
_base_ = ['./deit-small-p16_mergemix.py']
model = dict(
    backbone=dict(arch='s'),
    head=dict(in_channels=768),
)
