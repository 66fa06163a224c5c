"""Config, model and dataloader loading shared by the analysis tools.

Everything goes through the public mmengine / mmpretrain entry points: the
config's ``custom_imports`` and ``default_scope``, ``MODELS.build``,
:func:`mmengine.runner.load_checkpoint` (``import mergemix_mm`` makes local,
trusted checkpoints load on torch >= 2.6) and
:meth:`mmengine.runner.Runner.build_dataloader`.
"""
import copy
import os.path as osp
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner, load_checkpoint
from mmengine.utils import import_modules_from_strings
from torch import nn

__all__ = [
    'resolve_device', 'load_config', 'build_model', 'build_loader',
    'check_checkpoint', 'quiet_logger', 'preprocessed_batches',
    'predict_batches', 'batch_labels', 'num_classes_of', 'class_names_of',
    'config_img_size'
]

_SPLITS = ('train', 'val', 'test')


def resolve_device(device: Optional[str] = None) -> torch.device:
    """The device to run on: ``cuda`` if available when ``device`` is None.

    Args:
        device (str, optional): ``'cpu'``, ``'cuda'``, ``'cuda:1'``, ...
            Defaults to None.

    Returns:
        torch.device: The device.

    Raises:
        ValueError: If ``device`` is not a device string, or CUDA is asked
            for but not available.
    """
    if device is None:
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f'--device {device!r} is not a device: {err}') from err
    if dev.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'--device {device}: CUDA is not available on this '
                         'machine; use --device cpu.')
    return dev


def load_config(config: str, cfg_options: Optional[dict] = None) -> Config:
    """Read a config, apply overrides, import its ``custom_imports`` and set
    its default scope (``mmpretrain`` when it names none).

    Args:
        config (str): Config file path.
        cfg_options (dict, optional): ``--cfg-options`` style overrides.
            Defaults to None.

    Returns:
        Config: The config.

    Raises:
        FileNotFoundError: If the file does not exist.
    """
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file {config!r} does not exist.')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg['custom_imports'])
    import mergemix_mm  # noqa: F401  (registers the plugin's modules)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    quiet_logger()
    return cfg


def config_img_size(backbone: nn.Module) -> int:
    """Square input size a config's ViT backbone was built for (its
    position embedding's grid times the patch size), the default image size
    of the ToMe tools.

    Raises:
        ValueError: For a non-ViT backbone, or a non-square configured size
            (the tools then need ``--img-size``).
    """
    from ..models.tome import vit_img_size
    h, w = vit_img_size(backbone)
    if h != w:
        raise ValueError(f"the config's backbone is built for a non-square "
                         f'img_size {(h, w)}; pass --img-size')
    return h


def settings_schedules(settings: Sequence[str],
                       backbone: nn.Module,
                       img_size: int,
                       schedule_options: Optional[dict] = None
                       ) -> Dict[str, List[int]]:
    """``r`` per block of every ``--settings`` entry of the ToMe tools,
    checked against the tokens a ``img_size`` px image gives ``backbone``
    before anything runs.

    Args:
        settings (Sequence[str]): ``'none'``, ``'merge<N>'`` or ``'r<N>'``.
        backbone (nn.Module): The ViT (a ToMe backbone, mmpretrain or timm).
        img_size (int): Input size.
        schedule_options (dict, optional): ``inflect`` / ``compat`` of the
            ``'merge<N>'`` schedules. Defaults to None: the backbone's own
            (``merge_inflect`` and ``schedule_compat`` of a ToMe backbone),
            else the default schedule.

    Raises:
        ValueError: Naming ``--img-size`` (not a positive multiple of the
            patch size) or the ``--settings`` entry (unknown name, or more
            merging than the model's tokens allow).
    """
    from ..models.tome import (check_schedule, schedule_from_setting,
                               vit_geometry)
    if schedule_options is None:
        schedule_options = getattr(backbone, 'schedule_options', {})
    geo = vit_geometry(backbone)
    ph, pw = geo.patch_size
    if img_size < 1 or img_size % ph or img_size % pw:
        raise ValueError(f'--img-size {img_size} must be a positive multiple '
                         f"of the model's patch size {ph}x{pw}")
    num_tokens = (img_size // ph) * (img_size // pw) + geo.num_extra_tokens
    schedules = {}
    for setting in settings:
        try:
            r_list = schedule_from_setting(setting, geo.num_layers,
                                           **schedule_options)
        except ValueError as err:
            raise ValueError(f'--settings {setting}: {err}') from err
        check_schedule(r_list, num_tokens, geo.num_extra_tokens,
                       setting=f'--settings {setting} ({img_size} px, '
                       f'{num_tokens} tokens)')
        schedules[setting] = r_list
    return schedules


def quiet_logger(level: str = 'WARNING') -> None:
    """Make a ``level`` mmengine logger the current one, so that building
    models (parameter-init dumps, checkpoint messages) stays quiet."""
    from mmengine.logging import MMLogger
    name = f'mergemix_mm.analysis.{level.lower()}'
    if MMLogger.check_instance_created(name):
        MMLogger.get_instance(name)  # make it the current logger again
    else:
        MMLogger.get_instance(name, log_level=level)


def check_checkpoint(checkpoint: Optional[str]) -> None:
    """Raise FileNotFoundError naming ``checkpoint`` if it is not a file."""
    if checkpoint is not None and not osp.isfile(checkpoint):
        raise FileNotFoundError(
            f'checkpoint file {checkpoint!r} does not exist.')


def build_model(cfg: Config,
                checkpoint: Optional[str] = None,
                device: Union[str, torch.device, None] = None,
                strict: bool = True) -> nn.Module:
    """Build ``cfg.model`` and load a checkpoint into it.

    Without a checkpoint the model keeps the weights its ``init_weights``
    gives (random, or the config's ``init_cfg``). The model is returned in
    eval mode. Model-aware batch augments are bound at build time by the
    classifier (``MergeMixClassifier``, or mmpretrain's ``ImageClassifier``
    for the augments that only need a no-grad pass).

    Args:
        cfg (Config): A config loaded with :func:`load_config`.
        checkpoint (str, optional): Local checkpoint path. Defaults to None.
        device (str | torch.device, optional): Target device. Defaults to
            CPU.
        strict (bool): Require the checkpoint's keys to match the model's.
            Defaults to True.

    Returns:
        nn.Module: The model, on ``device``, in eval mode.

    Raises:
        FileNotFoundError: If ``checkpoint`` does not exist.
    """
    from mmpretrain.registry import MODELS
    check_checkpoint(checkpoint)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model_cfg = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        # as Runner does: the top-level preprocessor is the model's default
        model_cfg.setdefault('data_preprocessor',
                             copy.deepcopy(cfg.data_preprocessor))
    model = MODELS.build(model_cfg)
    if checkpoint is None:
        model.init_weights()
    else:
        load_checkpoint(model,
                        checkpoint,
                        map_location='cpu',
                        strict=strict,
                        logger='silent')
    model.to(device or torch.device('cpu'))
    model.eval()
    return model


def build_loader(cfg: Config,
                 split: str = 'test',
                 batch_size: Optional[int] = None,
                 seed: int = 0) -> torch.utils.data.DataLoader:
    """Build the config's ``{split}_dataloader`` with
    :meth:`Runner.build_dataloader`.

    Args:
        cfg (Config): The config.
        split (str): ``'train'``, ``'val'`` or ``'test'``. Defaults to
            ``'test'``.
        batch_size (int, optional): Overrides the config's batch size.
            Defaults to None.
        seed (int): Sampler seed (the train loader shuffles with it).
            Defaults to 0.

    Returns:
        DataLoader: The dataloader.

    Raises:
        ValueError: For an unknown split or a config without that loader.
    """
    if split not in _SPLITS:
        raise ValueError(f'split={split!r} must be one of {_SPLITS}.')
    key = f'{split}_dataloader'
    if cfg.get(key) is None:
        raise ValueError(f'the config has no {key}.')
    loader_cfg = copy.deepcopy(cfg.get(key))
    if hasattr(loader_cfg, 'to_dict'):
        loader_cfg = loader_cfg.to_dict()
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError(f'batch_size={batch_size} must be >= 1.')
        loader_cfg['batch_size'] = batch_size
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    return Runner.build_dataloader(loader_cfg, seed=seed)


def batch_labels(data_samples: list) -> torch.Tensor:
    """``[B]`` single-label ground truth of a batch's data samples.

    Raises:
        ValueError: If a sample has no ``gt_label`` or several labels.
    """
    labels = []
    for i, sample in enumerate(data_samples):
        if 'gt_label' not in sample:
            raise ValueError(f'sample {i} of the batch has no gt_label; the '
                             'analysis tools need a labelled split.')
        label = sample.gt_label.reshape(-1)
        if label.numel() != 1:
            raise ValueError(
                f'sample {i} has {label.numel()} labels; the analysis tools '
                'support single-label classification only.')
        labels.append(label)
    return torch.cat(labels).long()


def num_classes_of(model: nn.Module, loader=None) -> int:
    """Number of classes from the data preprocessor, the head or the
    dataset's ``classes``.

    Raises:
        ValueError: If none of them says.
    """
    for obj, attr in ((getattr(model, 'data_preprocessor', None),
                       'num_classes'), (getattr(model, 'head',
                                                None), 'num_classes')):
        value = getattr(obj, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    names = class_names_of(loader) if loader is not None else None
    if names:
        return len(names)
    raise ValueError('cannot tell the number of classes: set '
                     'data_preprocessor.num_classes in the config.')


def class_names_of(loader) -> Optional[List[str]]:
    """The dataset's ``metainfo['classes']`` as strings, or None."""
    dataset = getattr(loader, 'dataset', None)
    meta = getattr(dataset, 'metainfo', None) or {}
    classes = meta.get('classes')
    return [str(c) for c in classes] if classes else None


def preprocessed_batches(
        model: nn.Module,
        loader,
        max_batches: Optional[int] = None,
        progress: bool = True,
        desc: str = 'predict') -> Iterator[Tuple[int, torch.Tensor, list]]:
    """The batches of ``loader`` through the model's data preprocessor
    (test-time: ``data_preprocessor(data, False)``), with a tqdm bar.

    Args:
        model (nn.Module): An mmpretrain classifier.
        loader: The dataloader.
        max_batches (int, optional): Stop after this many batches.
            Defaults to None (all).
        progress (bool): Show a tqdm bar. Defaults to True.
        desc (str): Bar label. Defaults to ``'predict'``.

    Yields:
        tuple: ``(batch_idx, inputs, data_samples)``.
    """
    from tqdm import tqdm
    total = len(loader) if hasattr(loader, '__len__') else None
    if max_batches is not None:
        if max_batches < 1:
            raise ValueError(f'max_batches={max_batches} must be >= 1.')
        total = max_batches if total is None else min(total, max_batches)
    bar = tqdm(total=total,
               desc=desc,
               disable=not progress,
               leave=False,
               dynamic_ncols=True)
    try:
        for batch_idx, data in enumerate(loader):
            if max_batches is not None and batch_idx >= max_batches:
                break
            data = model.data_preprocessor(data, False)
            yield batch_idx, data['inputs'], data['data_samples']
            bar.update(1)
    finally:
        bar.close()


@torch.no_grad()
def predict_batches(
        model: nn.Module,
        loader,
        transform=None,
        max_batches: Optional[int] = None,
        progress: bool = True,
        desc: str = 'predict') -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Run the model's test-time path on every batch of ``loader``.

    This is ``model.val_step`` with an optional hook between the data
    preprocessor and the forward: ``data_preprocessor(data, False)``, then
    ``transform(inputs, batch_idx)`` if given, then
    ``model(inputs, data_samples, mode='predict')``.

    Args:
        model (nn.Module): An mmpretrain classifier in eval mode.
        loader: The dataloader.
        transform (callable, optional): ``(inputs, batch_idx) -> inputs`` on
            the normalised batch. Defaults to None.
        max_batches (int, optional): Stop after this many batches.
            Defaults to None (all).
        progress (bool): Show a tqdm bar. Defaults to True.
        desc (str): Bar label. Defaults to ``'predict'``.

    Yields:
        tuple: ``(pred_score [B, K], gt_label [B])`` on the CPU.
    """
    for batch_idx, inputs, samples in preprocessed_batches(
            model, loader, max_batches, progress, desc):
        if transform is not None:
            inputs = transform(inputs, batch_idx)
        preds = model(inputs, samples, mode='predict')
        scores = torch.stack([p.pred_score for p in preds]).float().cpu()
        yield scores, batch_labels(preds).cpu()
