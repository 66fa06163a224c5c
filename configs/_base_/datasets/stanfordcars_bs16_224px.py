# Stanford Cars at 224 px, batch 16: the fine-grained recipe of OpenMixup
# (configs/classification/_base_/datasets/cars/sz224_bs16.py, used by
# MergeMix):
# resize short edge 256, RandomResizedCrop 224 with area (0.5, 1), flip;
# test: resize short edge 256 + centre crop 224. ImageNet normalisation
# (fine-tuning from ImageNet weights).
# Data layout:
# data/stanford_cars/{cars_train/,cars_test/,devkit/cars_train_annos.mat,
#   devkit/cars_test_annos_withlabels.mat} or {car_ims/,cars_annos.mat};
#   8,144 train / 8,041 test.
# Prepare with:
#   python tools/dataset_converters/prepare_stanford_cars.py --archives \
#       cars_train.tgz cars_test.tgz car_devkit.tgz \
#       cars_test_annos_withlabels.mat --out data/stanford_cars
# To skip unreadable images during training (logged with their paths and a
# running count) set train_dataloader.dataset.skip_bad_samples=True.
dataset_type = 'StanfordCarsLocal'
data_root = 'data/stanford_cars'

data_preprocessor = dict(
    num_classes=196,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    # images are loaded as BGR by OpenCV
    to_rgb=True,
)

train_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short'),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.5, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]

test_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=16,
    num_workers=4,
    persistent_workers=True,
    drop_last=True,
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
