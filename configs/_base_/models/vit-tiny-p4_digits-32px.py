# A tiny ViT for 32 px inputs: patch 4 (8x8 = 64 patches + CLS), 4 blocks of
# width 96. Batch augments are set by each child config in
# `model.train_cfg.augments` (always a list, so children can swap them).
model = dict(
    type='MergeMixClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch=dict(embed_dims=96, num_layers=4, num_heads=4,
                  feedforward_channels=384),
        img_size=32,
        patch_size=4,
        drop_path_rate=0.1,
        out_type='cls_token',
    ),
    neck=None,
    head=dict(
        type='MixLabelClsHead',
        num_classes=10,
        in_channels=96,
        loss=dict(type='MixedLabelCrossEntropyLoss', label_smooth_val=0.1),
        cal_acc=False,
    ),
    train_cfg=dict(augments=[]),
)
