# DeiT-S/16 for CIFAR-100 at 224 px, shared by MergeMix and every baseline.
# The backbone is a ToMe ViT with merging off (merge_num=0 == stock ViT);
# MergeMix children turn merging on where the official recipe does.
model = dict(
    type='MergeMixClassifier',
    backbone=dict(
        type='ToMeVisionTransformer',
        arch='deit-small',
        img_size=224,
        patch_size=16,
        drop_path_rate=0.1,
        out_type='cls_token',
        merge_num=0,
    ),
    neck=None,
    head=dict(
        type='MixLabelClsHead',
        num_classes=100,
        in_channels=384,
        loss=dict(type='MixedLabelCrossEntropyLoss', label_smooth_val=0.1),
        cal_acc=False,
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=.02)],
    ),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ],
    tome_in_mix=True,
    aux_loss=None,
    train_cfg=dict(augments=[]),
)
