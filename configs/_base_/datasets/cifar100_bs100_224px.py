# CIFAR-100 at 224 px, batch 100: the OpenMixup recipe used by MergeMix
# (OpenMixup
# configs/classification/_base_/datasets/cifar100/sz224_randaug_bs100.py):
# RandomResizedCrop 224 scale (0.8, 1) bicubic, horizontal flip, RandAugment
# over
# the FixMatch operation set (2 ops, magnitude 7, std 0.5); test: resize to
# 224.
# Data: the local "python version" pickles in data/cifar100/cifar-100-python/
# (CIFAR100Local never downloads). Prepare with:
#   python tools/dataset_converters/prepare_cifar100.py \
#       --archive /path/to/cifar-100-python.tar.gz --out data/cifar100
dataset_type = 'CIFAR100Local'
data_root = 'data/cifar100'

# Images are RGB uint8 arrays (no file loading), so to_rgb=False.
# mean = (0.4914, 0.4822, 0.4465) * 255, std = (0.2023, 0.1994, 0.201) * 255.
data_preprocessor = dict(
    num_classes=100,
    mean=[125.307, 122.961, 113.8575],
    std=[51.5865, 50.847, 51.255],
    to_rgb=False,
)

# FixMatch RandAugment operations (same list as
# mergemix_mm.datasets.FIXMATCH_RANDAUG_POLICIES; `Identity` is registered by
# mergemix_mm).
fixmatch_randaug_policies = [
    dict(type='AutoContrast'),
    dict(type='Brightness', magnitude_range=(0.05, 0.95)),
    dict(type='ColorTransform', magnitude_range=(0.05, 0.95)),
    dict(type='Contrast', magnitude_range=(0.05, 0.95)),
    dict(type='Equalize'),
    dict(type='Identity'),
    dict(type='Posterize', magnitude_range=(4, 8)),
    dict(type='Rotate', magnitude_range=(0, 30)),
    dict(type='Sharpness', magnitude_range=(0.05, 0.95)),
    dict(type='Shear', magnitude_range=(0, 0.3), direction='horizontal'),
    dict(type='Shear', magnitude_range=(0, 0.3), direction='vertical'),
    dict(type='Solarize', magnitude_range=(256, 0)),
    dict(type='Translate', magnitude_range=(0, 0.3), direction='horizontal'),
    dict(type='Translate', magnitude_range=(0, 0.3), direction='vertical'),
]

train_pipeline = [
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.8, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        policies=fixmatch_randaug_policies,
        num_policies=2,
        total_level=10,
        magnitude_level=7,
        magnitude_std=0.5,
        # OpenMixup's pad value: the CIFAR mean in BGR order (RGB is
        # 125, 123, 114), applied as is to these RGB images, as OpenMixup
        # does
        hparams=dict(pad_val=[114, 123, 125], interpolation='bicubic')),
    dict(type='PackInputs'),
]

test_pipeline = [
    dict(type='Resize', scale=224, backend='pillow', interpolation='bicubic'),
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
        split='test',
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))

test_dataloader = val_dataloader
test_evaluator = val_evaluator
