# Tiny-ImageNet-200 at 64 px, batch 100 (OpenMixup
# configs/classification/_base_/datasets/tiny_imagenet/sz64_bs100.py):
# RandomResizedCrop 64 bicubic + flip; test: the 64x64 images as they are.
# Data: data/tiny-imagenet-200/{train,val}/<wnid>/ +
# meta/{classes,train,val}.txt.
# Prepare with:
#   python tools/dataset_converters/prepare_tiny_imagenet.py \
#       --archive tiny-imagenet-200.zip --out data/tiny-imagenet-200
dataset_type = 'TinyImageNet'
data_root = 'data/tiny-imagenet-200'

data_preprocessor = dict(
    num_classes=200,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    # images are loaded as BGR by OpenCV
    to_rgb=True,
)

train_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=64,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]

test_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=100,
    num_workers=4,
    persistent_workers=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)

val_dataloader = dict(
    batch_size=100,
    num_workers=4,
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
