"""Image loading that names the file it failed on, and can skip bad samples.

A long ImageNet run should not die on sample 900,000 with a bare
``cv2.error: (-215:Assertion failed) !buf.empty()`` that does not say which
file is broken. :class:`SafeLoadImageFromFile` is a drop-in replacement for
``LoadImageFromFile`` that

* raises :class:`ImageLoadError` naming the file and the cause when an image is
  missing, empty or cannot be decoded (the default), or
* with ``skip_bad=True``, logs a warning with the path and a running count and
  returns ``None``. mmengine's ``BaseDataset`` then draws another sample in
  training (up to ``max_refetch`` times in a row). Test-mode datasets cannot
  skip: mmengine raises on ``None``, right after our warning names the file.

The counter is kept per transform instance, i.e. per dataset and per
dataloader worker process; the log line says which worker counted it.
"""
import logging
from typing import Optional

import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log
from mmpretrain.registry import TRANSFORMS

__all__ = [
    'ImageLoadError', 'SafeLoadImageFromFile', 'enable_skip_bad_samples'
]


class ImageLoadError(OSError):
    """An image file listed by a dataset is missing, empty or undecodable.

    Args:
        message (str): The full error message (it names the file).
        path (str, optional): The image path. Defaults to None.
        reason (str, optional): Short description of the cause.
            Defaults to None.
    """

    def __init__(self,
                 message: str,
                 path: Optional[str] = None,
                 reason: Optional[str] = None):
        super().__init__(message)
        self.path = path
        self.reason = reason


def _worker_description() -> str:
    """Name the current dataloader worker (or the main process)."""
    try:
        from torch.utils.data import get_worker_info
        info = get_worker_info()
    except Exception:  # pragma: no cover - torch always importable here
        info = None
    if info is None:
        return 'the main process'
    return f'dataloader worker {info.id}'


@TRANSFORMS.register_module()
class SafeLoadImageFromFile(LoadImageFromFile):
    """Load an image from file; name the file when loading fails.

    Same arguments and outputs as mmcv's ``LoadImageFromFile`` (``to_float32``,
    ``color_type``, ``imdecode_backend``, ``ignore_empty``, ``backend_args``),
    plus:

    Args:
        skip_bad (bool): If False, a missing, empty or undecodable image raises
            :class:`ImageLoadError` naming the file. If True, the failure is
            logged as a warning with the path and the running count of skipped
            samples, and ``None`` is returned so that the training dataset
            draws another sample. Defaults to False.
        max_skipped (int, optional): Raise :class:`ImageLoadError` once more
            than this many images were skipped by this transform instance
            (per worker process), so that a badly broken copy of a dataset
            does not silently train on a fraction of its images. ``None``
            means no limit. Defaults to None.
        **kwargs: Arguments of ``mmcv.transforms.LoadImageFromFile``.

    Note:
        Whether a JPEG cut off after its header is detected depends on the
        decoder: OpenCV 5 (installed with mmcv here) rejects it, while OpenCV
        4.x decodes it partially with only a "Premature end of JPEG file"
        message. ``imdecode_backend='pillow'`` always rejects it.
    """

    def __init__(self,
                 skip_bad: bool = False,
                 max_skipped: Optional[int] = None,
                 **kwargs) -> None:
        if not isinstance(skip_bad, bool):
            raise TypeError(
                f'SafeLoadImageFromFile: skip_bad={skip_bad!r} must be a '
                'bool.')
        if max_skipped is not None and (not isinstance(max_skipped, int)
                                        or max_skipped < 0):
            raise ValueError(
                f'SafeLoadImageFromFile: max_skipped={max_skipped!r} must be '
                'None or an int >= 0.')
        super().__init__(**kwargs)
        self.skip_bad = skip_bad
        self.max_skipped = max_skipped
        self.num_skipped = 0

    def transform(self, results: dict) -> Optional[dict]:
        """Load the image at ``results['img_path']``.

        Args:
            results (dict): Result dict with the key ``img_path``.

        Returns:
            dict | None: ``results`` with ``img``, ``img_shape`` and
            ``ori_shape`` added; ``None`` when the image is bad and
            ``skip_bad`` is True (or when ``ignore_empty`` applies).

        Raises:
            ImageLoadError: If the image cannot be loaded and ``skip_bad`` is
                False, or more than ``max_skipped`` images were skipped.
        """
        path = results.get('img_path')
        try:
            out = super().transform(results)
        except Exception as err:  # noqa: BLE001 - re-raised with the path
            reason = f'{type(err).__name__}: {err}'.strip()
            return self._bad_image(path, reason, err)
        if out is None:  # ``ignore_empty=True`` and the file is missing
            return None
        img = out.get('img')
        if not isinstance(img, np.ndarray) or img.size == 0:
            return self._bad_image(path, 'decoded to an empty image', None)
        return out

    def _bad_image(self, path: Optional[str], reason: str,
                   cause: Optional[BaseException]) -> None:
        if not self.skip_bad:
            raise ImageLoadError(
                f'Cannot load image file {path!r} ({reason}). Replace or '
                'remove the file, or set skip_bad_samples=True on the dataset '
                '(skip_bad=True on SafeLoadImageFromFile) to skip unreadable '
                'images during training.',
                path=path,
                reason=reason) from cause
        self.num_skipped += 1
        if (self.max_skipped is not None
                and self.num_skipped > self.max_skipped):
            raise ImageLoadError(
                f'Cannot load image file {path!r} ({reason}); this is the '
                f'{self.num_skipped}th unreadable image in '
                f'{_worker_description()}, more than '
                f'max_skipped={self.max_skipped}. Check the dataset copy.',
                path=path,
                reason=reason) from cause
        print_log(
            f'Skipped unreadable image {path!r} ({reason}); '
            f'{self.num_skipped} image(s) skipped so far in '
            f'{_worker_description()}.',
            logger='current',
            level=logging.WARNING)
        return None

    def __repr__(self) -> str:
        return (super().__repr__()[:-1] + f', skip_bad={self.skip_bad}, '
                f'max_skipped={self.max_skipped})')


def enable_skip_bad_samples(dataset,
                            dataset_name: str,
                            evaluation: bool = False) -> int:
    """Switch on ``skip_bad`` in every :class:`SafeLoadImageFromFile` of a
    dataset's pipeline.

    Used by the ``skip_bad_samples=True`` option of the datasets in this
    package. For evaluation data (``evaluation=True`` or a test-mode dataset)
    nothing is switched, since a replaced sample would change the metric, and
    a warning is logged instead.

    Args:
        dataset: A built mmengine ``BaseDataset`` (with ``pipeline`` and
            ``test_mode``).
        dataset_name (str): Name used in messages.
        evaluation (bool): Whether the dataset is an evaluation split
            (e.g. ``split='val'``). Defaults to False.

    Returns:
        int: The number of transforms switched to ``skip_bad=True``.

    Raises:
        ValueError: If the pipeline has no :class:`SafeLoadImageFromFile`.
    """
    loaders = [
        t for t in getattr(dataset.pipeline, 'transforms', [])
        if isinstance(t, SafeLoadImageFromFile)
    ]
    if not loaders:
        raise ValueError(
            f'{dataset_name}: skip_bad_samples=True needs '
            "dict(type='SafeLoadImageFromFile') in the pipeline (instead of "
            "'LoadImageFromFile'); the pipeline has none.")
    if evaluation or dataset.test_mode:
        print_log(
            f'{dataset_name}: skip_bad_samples=True is ignored for evaluation '
            'data (every evaluation sample must be read); unreadable images '
            'raise an error naming the file.',
            logger='current',
            level=logging.WARNING)
        return 0
    for t in loaders:
        t.skip_bad = True
    return len(loaders)
