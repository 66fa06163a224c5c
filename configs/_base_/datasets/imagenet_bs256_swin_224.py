# ImageNet-1k at 224 px, 256 images per GPU: the DeiT/Swin recipe
# (adapted from mmpretrain 1.2.0
# configs/_base_/datasets/imagenet_bs64_swin_224.py,
# Apache-2.0; OpenMixup imagenet/swin_sz224_4xbs256.py is the same recipe):
# RandomResizedCrop 224 bicubic, flip, RandAugment (timm "increasing" ops,
# magnitude 9, std 0.5), RandomErasing p=0.25; test: resize short edge 256 +
# centre crop 224.
# Data: data/imagenet/{train,val}/<wnid>/ + meta/{train,val}.txt. Prepare with:
#   python tools/dataset_converters/prepare_imagenet.py \
#       --train-tar ILSVRC2012_img_train.tar --val-tar ILSVRC2012_img_val.tar \
#       --devkit ILSVRC2012_devkit_t12.tar.gz --out data/imagenet
# To skip unreadable images during training (logged with their paths and a
# running count) set train_dataloader.dataset.skip_bad_samples=True.
dataset_type = 'ImageNetLocal'
data_root = 'data/imagenet'

data_preprocessor = dict(
    num_classes=1000,
    # RGB format normalization parameters
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    # images are loaded as BGR by OpenCV
    to_rgb=True,
)

bgr_mean = data_preprocessor['mean'][::-1]
bgr_std = data_preprocessor['std'][::-1]

train_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=224,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(
            pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=bgr_mean,
        fill_std=bgr_std),
    dict(type='PackInputs'),
]

test_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(
        type='ResizeEdge',
        scale=256,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=256,
    num_workers=8,
    persistent_workers=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)

val_dataloader = dict(
    batch_size=256,
    num_workers=8,
    persistent_workers=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='val',
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))

test_dataloader = val_dataloader
test_evaluator = val_evaluator
