# ViT-S/16, CIFAR-100 at 224 px, batch 100, 200 epochs.
# Attentive-CutMix+ (top-k from Beta(2, 2), OpenMixup CIFAR config) with the
# model's own backbone as the extractor. For the paper's frozen ResNet-50 add
# extractor=dict(type='ResNet', depth=50, out_indices=(3, ), init_cfg=dict(
#     type='Pretrained', checkpoint='torchvision://resnet50')) and top_k=6
# (its 7x7 map at 224 px).
_base_ = [
    '../../_base_/models/vit-small-p16_mergemix.py',
    '../../_base_/datasets/cifar100_bs100_224px.py',
    '../../_base_/schedules/cifar100_adamw_200e.py',
    '../../_base_/default_runtime.py',
]
model = dict(
    train_cfg=dict(augments=[
        dict(type='AttentiveCutMix', alpha=2.0, top_k=None),
    ]))
