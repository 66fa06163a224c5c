"""Save the mixed training batch as a PNG every N iterations.

The batch augment mixes inside ``train_step`` (in the data preprocessor), so
the hook captures the preprocessor's *output* of the chosen iterations with
a forward hook: nothing is recomputed and no random number is drawn, so
training is identical with and without it. Drawing happens after the
iteration, on the main process only, with matplotlib's Agg backend (no
display, no GUI thread). For own image, partner and mask side by side, use
``tools/analysis/visualize_mix.py`` on a checkpoint.
"""
import os
import os.path as osp
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS

from ..utils.checks import check_bool, check_number

__all__ = ['MixSamplesHook']


@HOOKS.register_module()
class MixSamplesHook(Hook):
    """Write ``<work_dir>/<out_dir>/iter_<n>.png``: the mixed images of
    training iteration ``n`` with their soft labels (as the batch augment
    made them, before any re-scoring by the classifier's training forward).

    Args:
        interval (int): Every ``interval`` training iterations (>= 1).
            Defaults to 500.
        max_images (int): Images drawn per figure (>= 1). Defaults to 16.
        out_dir (str): Folder under the run's ``work_dir`` (or an absolute
            path). Defaults to ``'mix_samples'``.
        bgr (bool): The inputs are BGR (a config with ``to_rgb=False`` that
            loads images with OpenCV). Defaults to False.
    """

    priority = 'LOW'

    def __init__(self,
                 interval: int = 500,
                 max_images: int = 16,
                 out_dir: str = 'mix_samples',
                 bgr: bool = False) -> None:
        self.interval = check_number('MixSamplesHook', 'interval', interval,
                                     low=1, integer=True)
        self.max_images = check_number('MixSamplesHook', 'max_images',
                                       max_images, low=1, integer=True)
        if not isinstance(out_dir, str) or not out_dir:
            raise ValueError(f'MixSamplesHook: out_dir={out_dir!r} must be '
                             'a non-empty path')
        self.out_dir = out_dir
        self.bgr = check_bool('MixSamplesHook', 'bgr', bgr)
        self._handle = None
        self._captured: Optional[dict] = None

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def _remove_capture(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        # an iteration that raised never reached after_train_iter
        self._remove_capture()
        if not (is_main_process()
                and self.every_n_train_iters(runner, self.interval)):
            return
        self._captured = None

        def capture(module, args, kwargs, output):
            training = kwargs.get('training', args[1] if len(args) > 1 else
                                  False)
            if training and isinstance(output, dict):
                self._captured = output

        preprocessor = self._model(runner).data_preprocessor
        self._handle = preprocessor.register_forward_hook(capture,
                                                          with_kwargs=True)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if self._handle is None:
            return
        self._remove_capture()
        captured, self._captured = self._captured, None
        if captured is None:
            return
        import torch

        from ..analysis.mix_vis import plot_mixed_batch
        samples = captured['data_samples']
        mixed = captured['inputs']
        preprocessor = self._model(runner).data_preprocessor
        num_classes = getattr(preprocessor, 'num_classes', None)
        scores = []
        for sample in samples:
            if 'gt_score' in sample:
                scores.append(sample.gt_score.detach().float().cpu())
            elif num_classes:
                score = torch.zeros(int(num_classes))
                score[int(sample.gt_label[0])] = 1.0
                scores.append(score)
            else:
                return  # labels that cannot be drawn as a distribution
        names = None
        dataset = getattr(runner.train_dataloader, 'dataset', None)
        meta = getattr(dataset, 'metainfo', None) or {}
        if meta.get('classes'):
            names = list(meta['classes'])
        folder = self.out_dir if osp.isabs(self.out_dir) else osp.join(
            runner.work_dir, self.out_dir)
        os.makedirs(folder, exist_ok=True)
        path = osp.join(folder, f'iter_{runner.iter + 1}.png')
        plot_mixed_batch(
            mixed, torch.stack(scores), path,
            data_preprocessor=preprocessor,
            class_names=names, max_images=self.max_images, bgr=self.bgr,
            title=f'mixed training batch, iteration {runner.iter + 1}')

    def after_train(self, runner) -> None:
        self._remove_capture()
