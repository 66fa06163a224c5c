# DeiT-S/16, CIFAR-100 at 224 px, batch 100, 200 epochs (OpenMixup recipe).
# Attentive-CutMix+ (top-k from Beta(2, 2), OpenMixup CIFAR config) with the
# model's own backbone as the extractor. OpenMixup's config uses a frozen
# torchvision ResNet-50 (7x7 map at 224 px) with the same top_k=None: add
# extractor=dict(type='ResNet', depth=50, out_indices=(3, ), init_cfg=dict(
#     type='Pretrained', checkpoint='torchvision://resnet50')).
# The Attentive CutMix paper itself uses that extractor with top_k=6.
_base_ = [
    '../../_base_/models/deit-small-p16_mergemix.py',
    '../../_base_/datasets/cifar100_bs100_224px.py',
    '../../_base_/schedules/cifar100_adamw_200e.py',
    '../../_base_/default_runtime.py',
]
model = dict(
    train_cfg=dict(augments=[
        dict(type='AttentiveCutMix', alpha=2.0, top_k=None),
    ]))
