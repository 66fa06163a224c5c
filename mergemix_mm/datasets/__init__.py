from .cifar100 import (CIFAR100Local, check_cifar100_layout,
                       load_cifar100_pickle)
from .digits import DigitsDataset, digits_split_indices, load_digits_images
from .fine_grained import (CUBLocal, FGVCAircraftLocal, StanfordCarsLocal,
                           check_aircraft_layout, check_cub_layout,
                           check_stanford_cars_layout)
from .imagenet import ImageNetLocal, check_imagenet_layout
from .layout import DatasetLayoutError
from .randaug_policies import FIXMATCH_RANDAUG_POLICIES, Identity
from .safe_loading import ImageLoadError, SafeLoadImageFromFile
from .tiny_imagenet import TinyImageNet, check_tiny_imagenet_layout

__all__ = [
    'DigitsDataset', 'digits_split_indices', 'load_digits_images',
    'CIFAR100Local', 'check_cifar100_layout', 'load_cifar100_pickle',
    'ImageNetLocal', 'check_imagenet_layout', 'CUBLocal', 'StanfordCarsLocal',
    'FGVCAircraftLocal', 'check_cub_layout', 'check_stanford_cars_layout',
    'check_aircraft_layout', 'TinyImageNet', 'check_tiny_imagenet_layout',
    'DatasetLayoutError', 'ImageLoadError', 'SafeLoadImageFromFile',
    'Identity', 'FIXMATCH_RANDAUG_POLICIES'
]
