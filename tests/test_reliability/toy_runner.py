"""A tiny mmengine Runner (linear model, random data) for in-process
reliability tests: checkpoints, resume, RNG states and the non-finite guard.

The model draws from torch (dropout) and NumPy (a loss weight) on every step,
so an exact resume needs the generators' states restored.
"""
import uuid
from typing import List, Optional, Union

import numpy as np
import torch
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.structures import BaseDataElement
from torch.utils.data import Dataset

from mergemix_mm.engine import NonFiniteGuardHook, RNGStateHook

DIM = 8


class ToyDataset(Dataset):
    """``n`` random vectors with a linear target; metainfo has sample_idx."""

    def __init__(self, n: int = 24, nan_at: Optional[int] = None):
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(n, DIM, generator=g)
        self.y = self.x @ torch.randn(DIM, 1, generator=g)
        if nan_at is not None:
            self.x[nan_at, 0] = float('nan')
        self.metainfo = dict(classes=('toy', ))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(
            inputs=self.x[i],
            data_samples=BaseDataElement(
                metainfo=dict(sample_idx=i), target=self.y[i]))


class ToyModel(BaseModel):
    """Linear regression with dropout and a NumPy-drawn loss weight."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(DIM, 1)
        self.drop = torch.nn.Dropout(0.2)
        self.poison = False

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = torch.stack(inputs) if isinstance(inputs, list) else inputs
        out = self.lin(self.drop(x))
        if mode == 'loss':
            y = torch.stack([ds.target for ds in data_samples])
            weight = 1.0 + 0.1 * float(np.random.rand())
            loss = weight * ((out - y)**2).mean()
            if self.poison:
                loss = loss * float('nan')
            return dict(loss=loss)
        if mode == 'predict':
            return [
                BaseDataElement(pred=o, target=ds.target)
                for o, ds in zip(out, data_samples)
            ]
        return out


class ToyMetric(BaseMetric):
    default_prefix = 'toy'

    def process(self, data_batch, data_samples) -> None:
        for ds in data_samples:
            self.results.append(float((ds['pred'] - ds['target']).abs()))

    def compute_metrics(self, results) -> dict:
        return dict(mae=float(np.mean(results)))


class Interrupted(Exception):
    """Raised by :class:`InterruptHook` (an in-process "kill")."""


class InterruptHook(Hook):
    """Raise :class:`Interrupted` before a 1-based global training iteration,
    or after the k-th iteration of the validation that follows an epoch."""

    priority = 'HIGHEST'

    def __init__(self, iteration: Optional[int] = None,
                 val_epoch: Optional[int] = None, val_iter: int = 1):
        self.iteration = iteration
        self.val_epoch = val_epoch
        self.val_iter = val_iter

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == self.iteration:
            raise Interrupted(f'stopped at iteration {self.iteration}')

    def after_val_iter(self, runner, batch_idx, data_batch=None,
                       outputs=None):
        if runner.epoch == self.val_epoch and batch_idx + 1 == self.val_iter:
            raise Interrupted(f'stopped in validation after epoch '
                              f'{self.val_epoch}')


class PoisonAtIterHook(Hook):
    """Make the loss NaN at the given 1-based iterations."""

    priority = 'HIGHEST'

    def __init__(self, iterations: List[int]):
        self.iterations = set(iterations)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        model = runner.model.module if hasattr(runner.model,
                                               'module') else runner.model
        model.poison = runner.iter + 1 in self.iterations


def build_toy_runner(work_dir: str,
                     max_epochs: int = 3,
                     resume: bool = False,
                     load_from: Optional[str] = None,
                     rng_hook: Union[bool, dict] = True,
                     guard: Optional[dict] = None,
                     custom_hooks: Optional[list] = None,
                     dataset: Optional[Dataset] = None,
                     val: bool = True,
                     deterministic: bool = True,
                     by_epoch: bool = True) -> Runner:
    """A Runner of :class:`ToyModel` (6 iterations per epoch, batch 4).

    ``by_epoch=False`` trains ``6 * max_epochs`` iterations with
    IterBasedTrainLoop and a checkpoint every 6 iterations.
    """
    default_hooks = dict(
        checkpoint=dict(type='CheckpointHook', interval=1 if by_epoch else 6,
                        by_epoch=by_epoch),
        logger=dict(type='LoggerHook', interval=1))
    rng_kwargs = rng_hook if isinstance(rng_hook, dict) else dict(
        enable=rng_hook)
    hooks = [RNGStateHook(**rng_kwargs),
             NonFiniteGuardHook(**(guard or {}))] + list(custom_hooks or [])
    kwargs = {}
    if val:
        kwargs = dict(
            val_dataloader=dict(
                dataset=ToyDataset(n=8),
                sampler=dict(type='DefaultSampler', shuffle=False),
                batch_size=4,
                collate_fn=dict(type='pseudo_collate')),
            val_cfg=dict(),
            val_evaluator=Evaluator([ToyMetric()]))
    # A model built from a config is initialised after the Runner seeds the
    # generators; an instance passed in is built before, so seed it here.
    torch.manual_seed(7)
    return Runner(
        model=ToyModel(),
        work_dir=work_dir,
        experiment_name=f'toy_{uuid.uuid4().hex}',
        train_dataloader=dict(
            dataset=dataset if dataset is not None else ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=4,
            collate_fn=dict(type='pseudo_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05,
                                          momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[2] if by_epoch
                             else [12], by_epoch=by_epoch),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
        if by_epoch else dict(by_epoch=False, max_iters=6 * max_epochs,
                              val_interval=6),
        default_hooks=default_hooks,
        custom_hooks=hooks,
        randomness=dict(seed=7, deterministic=deterministic),
        resume=resume,
        load_from=load_from,
        default_scope='mmpretrain',
        log_level='WARNING',
        **kwargs)


def weights(runner: Runner) -> dict:
    model = runner.model.module if hasattr(runner.model,
                                           'module') else runner.model
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
