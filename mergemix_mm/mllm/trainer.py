"""``transformers.Trainer`` subclass for MergeMix preference tuning.

:class:`MergeMixTrainer` trains a :class:`~mergemix_mm.mllm.model.MergeMixVLM`
(whose ``forward`` computes SFT + mixed SimPO) and adds what the loss needs
from the training loop:

* ``lam``: ``U(0, 1)`` drawn every optimisation step (``lam_schedule=
  'step'``, paper Alg. 1/2; the same value for every micro-batch of a step)
  or once per run (``'once'``, official code);
* logging of the SFT and SimPO terms, the mean ``lam`` and the reward
  accuracy (fraction of pairs whose clean image scores higher);
* loss scaling for gradient accumulation (``loss_is_scaled_for_ga = False``:
  the loss is a per-micro-batch mean, divided by the accumulation steps);
* optional learning rates of their own for the vision tower and the
  projector (the paper's Qwen2.5-VL recipe: 2e-6 / 1e-5 with 1e-5 for the
  LLM); every other parameter uses ``args.learning_rate``;
* checkpoints that hold the plain Hugging Face model (``save_pretrained`` of
  the wrapped MLLM, with the tokenizer and the image processor), loadable
  with ``from_pretrained``; resuming and ``load_best_model_at_end`` load them
  back into the wrapper.

TRL is not used: its CPO/SimPO trainer is text-only and its vision DPO
collator shares the image between chosen and rejected (see
``docs/design/MLLM_NOTES.md`` §1); MergeMix pairs share the text and differ
in the image.
DeepSpeed / accelerate / torchrun work as for any ``Trainer``.
"""
import logging
import math
import os
from typing import Any, Dict, Optional

import torch
from mmengine.logging import print_log
from transformers import Trainer
from transformers import trainer as hf_trainer

from .model import MergeMixVLM

__all__ = ['MergeMixTrainer']


class MergeMixTrainer(Trainer):
    """Trainer for :class:`MergeMixVLM`.

    Args:
        *args: Positional arguments of ``transformers.Trainer``.
        lam_seed (int, optional): Seed of the ``lam`` generator. Defaults to
            None: ``args.seed`` plus the process index for
            ``lam_schedule='step'`` (every process mixes with its own
            ``lam``), ``args.seed`` for ``'once'`` (one ``lam`` for the whole
            run on every process, as the official code draws it after
            seeding every rank alike).
        image_processor (optional): Saved with every checkpoint and the
            final model (``save_pretrained``), so that each of them loads
            with ``AutoProcessor.from_pretrained``. Defaults to None.
        vision_tower_lr (float, optional): Learning rate of the vision
            encoder (without the projector). Defaults to None:
            ``args.learning_rate``.
        mm_projector_lr (float, optional): Learning rate of the projector
            (LLaVA's ``multi_modal_projector``, Qwen2.5-VL's patch merger).
            Defaults to None: ``args.learning_rate``.
        **kwargs: Keyword arguments of ``transformers.Trainer``.

    The two learning rates follow the warm-up and decay of
    ``args.lr_scheduler_type`` like the main one. They need the Trainer to
    build the optimizer and its schedule, so an optimizer passed in, a
    DeepSpeed config with its own ``optimizer`` or ``scheduler`` section,
    or an ``optim`` that builds its own parameter groups is refused.
    """
    loss_is_scaled_for_ga = False

    def __init__(self, *args, lam_seed: Optional[int] = None,
                 image_processor: Optional[Any] = None,
                 vision_tower_lr: Optional[float] = None,
                 mm_projector_lr: Optional[float] = None, **kwargs):
        for name, value in (('vision_tower_lr', vision_tower_lr),
                            ('mm_projector_lr', mm_projector_lr)):
            if value is not None and (isinstance(value, bool) or not (
                    isinstance(value, (int, float)) and math.isfinite(value)
                    and value > 0)):
                raise ValueError(f'{name} must be a finite number > 0, '
                                 f'got {value!r}')
        self.part_lrs = dict(vision_tower=vision_tower_lr,
                             projector=mm_projector_lr)
        super().__init__(*args, **kwargs)
        self.image_processor = image_processor
        self._check_part_lrs_usable()
        model = self.accelerator.unwrap_model(self.model)
        if not isinstance(model, MergeMixVLM):
            raise TypeError('MergeMixTrainer trains a MergeMixVLM, got '
                            f'{type(model).__name__}')
        self.mm_args = model.mm_args
        once_seed = int(self.args.seed if lam_seed is None else lam_seed)
        if lam_seed is None:
            lam_seed = int(self.args.seed) + int(self.args.process_index)
        self._lam_seed = int(lam_seed)
        self._lam_once = float(
            torch.rand((),
                       generator=torch.Generator().manual_seed(once_seed)))
        self._lam_step = None
        self._lam_value = None
        self._stats: Dict[str, float] = {}
        self._stats_n = 0

    # ------------------------------------------------------------------ #
    def current_lambda(self) -> float:
        """``lam`` for the current optimisation step (cached per step)."""
        if self.mm_args.lam_schedule == 'once':
            return self._lam_once
        step = self.state.global_step
        if self._lam_step != step:
            # A function of (seed, step): resuming reproduces the sequence.
            gen = torch.Generator().manual_seed(self._lam_seed * 1_000_003 +
                                                step)
            self._lam_step = step
            self._lam_value = float(torch.rand((), generator=gen))
        return self._lam_value

    def compute_loss(self, model, inputs: Dict[str, Any],
                     return_outputs: bool = False,
                     num_items_in_batch=None):
        inputs = dict(inputs)
        inputs.pop('sample_ids', None)
        inputs.pop('answers', None)
        if model.training:
            inputs['lam'] = self.current_lambda()
        outputs = model(**inputs)
        if model.training:
            self._record(outputs)
        loss = outputs.loss
        return (loss, outputs) if return_outputs else loss

    def _deepspeed_config(self) -> dict:
        """The DeepSpeed config in use ({} without DeepSpeed): from
        ``--deepspeed``, or from an accelerate DeepSpeed plugin (``accelerate
        launch --use_deepspeed``), where it never reaches ``args``."""
        ds = getattr(self.args, 'hf_deepspeed_config', None)
        if ds is None and getattr(self, 'is_deepspeed_enabled', False):
            plugin = getattr(self.accelerator.state, 'deepspeed_plugin', None)
            ds = getattr(plugin, 'hf_ds_config', None)
        return getattr(ds, 'config', None) or {}

    def _check_part_lrs_usable(self) -> None:
        if not self._has_part_lrs():
            return
        if self.optimizer is not None:
            raise ValueError('vision_tower_lr / mm_projector_lr cannot be '
                             'used with an optimizer passed to the Trainer')
        sections = [k for k in ('optimizer', 'scheduler')
                    if k in self._deepspeed_config()]
        if sections:
            raise ValueError(
                'vision_tower_lr / mm_projector_lr need the Trainer to build '
                'the optimizer and its schedule: remove the '
                f'{" and ".join(repr(k) for k in sections)} section(s) of the '
                'DeepSpeed config (DeepSpeed would apply one learning rate '
                'to every group)')

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        """The Trainer's optimizer, with the parts' own learning rates.

        Without ``vision_tower_lr`` / ``mm_projector_lr`` this is
        ``Trainer.create_optimizer``. With them, the Trainer builds its
        optimizer as usual (its class and kwargs, weight decay except on
        biases and norms, and its other set-up), and each of its parameter
        groups is then split by part before any step; the parts with a rate
        of their own get it. The language model's groups come first, so the
        logged ``learning_rate`` (the first group's) is
        ``args.learning_rate`` unless the language model is frozen.
        """
        if self.optimizer is not None or not self._has_part_lrs():
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        optimizer_cls, optimizer_kwargs = (
            self.optimizer_cls_and_kwargs
            or self.get_optimizer_cls_and_kwargs(self.args, opt_model))
        if (hf_trainer.is_optimizer_factory(optimizer_cls) or any(
                k in optimizer_kwargs
                for k in ('params', 'model', 'optimizer_dict'))):
            optim = getattr(self.args.optim, 'value', self.args.optim)
            raise ValueError(
                f'optim={optim!r} builds its own parameter groups; '
                'vision_tower_lr / mm_projector_lr need a standard optimizer '
                '(e.g. adamw_torch)')
        optimizer = super().create_optimizer(model)
        self._split_groups_by_part(optimizer,
                                   self.accelerator.unwrap_model(opt_model))
        return optimizer

    def _has_part_lrs(self) -> bool:
        return any(v is not None for v in self.part_lrs.values())

    def _split_groups_by_part(self, optimizer: torch.optim.Optimizer,
                              wrapper: MergeMixVLM) -> None:
        part_of = {
            id(p): part
            for part, params in wrapper.parameter_groups().items()
            for p in params
        }
        groups = optimizer.param_groups
        if any(id(p) not in part_of for g in groups for p in g['params']):
            # e.g. FSDP with flattened parameters: the parts' modules no
            # longer own the tensors the optimizer has to update
            raise ValueError(
                'vision_tower_lr / mm_projector_lr: the parameters being '
                'optimised are not those of the model\'s parts (is it '
                'wrapped with flattened parameters, e.g. FSDP without '
                'use_orig_params?); unset them')
        split = []
        for part in ('language_model', 'vision_tower', 'projector'):
            lr = self.part_lrs.get(part)
            found = False
            for group in groups:
                chosen = [p for p in group['params'] if part_of[id(p)] == part]
                if not chosen:
                    continue
                found = True
                split.append(dict(group, params=chosen))
                if lr is not None:
                    split[-1]['lr'] = float(lr)
            if lr is not None and not found:
                setting = ('vision_tower_lr' if part == 'vision_tower' else
                           'mm_projector_lr')
                raise ValueError(f'{setting}={lr} is set but the {part} has '
                                 'no trainable parameters (frozen)')
        optimizer.param_groups[:] = split

    def _record(self, outputs) -> None:
        stats = {'sft_loss': float(outputs.sft_loss.detach())}
        if outputs.simpo_loss is not None:
            stats['simpo_loss'] = float(outputs.simpo_loss.detach())
        if outputs.pair_rows is not None and outputs.pair_rows.numel():
            n = outputs.num_tokens[outputs.pair_rows].clamp(min=1)
            rw = outputs.logp_winner.detach()[outputs.pair_rows] / n
            rl = outputs.logp_loser.detach() / n
            stats['reward_acc'] = float((rw > rl).float().mean())
            stats['lam'] = float(outputs.lam.mean())
        for k, v in stats.items():
            self._stats[k] = self._stats.get(k, 0.) + v
        self._stats[''] = self._stats.get('', 0.) + 1

    def log(self, logs: Dict[str, float], *args, **kwargs) -> None:
        count = self._stats.pop('', 0.)
        if count and 'loss' in logs:
            for k, v in self._stats.items():
                logs[k] = round(v / count, 6)
            self._stats = {}
        elif count:
            self._stats[''] = count
        super().log(logs, *args, **kwargs)

    def prediction_step(self, model, inputs, prediction_loss_only,
                        ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    # ------------------------------------------------------------------ #
    def _save(self, output_dir: Optional[str] = None,
              state_dict: Optional[dict] = None) -> None:
        """Save the wrapped Hugging Face model with ``save_pretrained``."""
        output_dir = output_dir if output_dir is not None else \
            self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        wrapper = self.accelerator.unwrap_model(self.model)
        if state_dict is not None:
            prefix = 'vlm.'
            state_dict = {
                k[len(prefix):]: v
                for k, v in state_dict.items() if k.startswith(prefix)
            }
        wrapper.vlm.save_pretrained(output_dir, state_dict=state_dict)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        if self.image_processor is not None:
            self.image_processor.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, 'training_args.bin'))

    def _load_from_checkpoint(self, resume_from_checkpoint: str,
                              model=None) -> None:
        """Resume: the checkpoint is a ``save_pretrained`` directory of the
        inner model (whose on-disk key names may differ from the module's, so
        it is read back with ``from_pretrained``)."""
        if model is not None and not isinstance(model, MergeMixVLM):
            return super()._load_from_checkpoint(resume_from_checkpoint,
                                                 model=model)
        vlm = self.accelerator.unwrap_model(self.model).vlm
        loaded = type(vlm).from_pretrained(resume_from_checkpoint,
                                           dtype=vlm.dtype)
        vlm.load_state_dict(loaded.state_dict())
        del loaded

    def _load_best_model(self) -> None:
        """``load_best_model_at_end``: the best checkpoint is a
        ``save_pretrained`` directory of the inner model, read back as on
        resume (the stock loader expects the wrapper's key names)."""
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return super()._load_best_model()
        best = self.state.best_model_checkpoint
        if not os.path.isdir(best):  # as the stock loader does
            print_log(f'Could not locate the best model at {best}; on '
                      'several nodes set --save_on_each_node.',
                      logger='current', level=logging.WARNING)
            return
        print_log(f'Loading best model from {best} (score: '
                  f'{self.state.best_metric}).', logger='current')
        self._load_from_checkpoint(best)
