from .digits import DigitsDataset, digits_split_indices, load_digits_images

__all__ = ['DigitsDataset', 'digits_split_indices', 'load_digits_images']
