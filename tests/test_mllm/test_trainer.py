"""MergeMixTrainer: lambda schedule, logging, checkpoints, part lrs."""
from types import SimpleNamespace

import pytest
import torch
from transformers import TrainerCallback, TrainingArguments

from mergemix_mm.mllm import (ConversationCollator, MergeMixArguments,
                              MergeMixTrainer, MergeMixVLM)


class _Lams(TrainerCallback):

    def __init__(self):
        self.trainer = None
        self.per_step = []

    def on_step_end(self, args, state, control, **kwargs):
        self.per_step.append(self.trainer.current_lambda())


def _trainer(tmp_path, tiny_llava, samples, mm_args, steps=4, accum=1):
    model, processor, tok = tiny_llava
    wrapper = MergeMixVLM(model, mm_args)
    collator = ConversationCollator(
        tok, processor, num_image_tokens=wrapper.num_visual_tokens(),
        image_size=32, system_prompt='')
    args = TrainingArguments(
        output_dir=str(tmp_path / 'out'), per_device_train_batch_size=4,
        gradient_accumulation_steps=accum, max_steps=steps,
        learning_rate=1e-3, logging_steps=1, save_strategy='no',
        report_to=[], use_cpu=True, remove_unused_columns=False,
        disable_tqdm=True, seed=0)
    trainer = MergeMixTrainer(model=wrapper, args=args, train_dataset=samples,
                              data_collator=collator, processing_class=tok)
    return trainer


def test_lambda_changes_every_step_and_is_shared_by_micro_batches(
        tmp_path, tiny_llava, make_samples):
    trainer = _trainer(tmp_path, tiny_llava, make_samples(16),
                       MergeMixArguments(merge_num=16), steps=4, accum=2)
    seen = []
    orig = trainer.model.forward

    def spy(*args, **kwargs):
        seen.append((trainer.state.global_step, kwargs['lam']))
        return orig(*args, **kwargs)

    trainer.model.forward = spy
    trainer.train()
    by_step = {}
    for step, lam in seen:
        by_step.setdefault(step, set()).add(lam)
    assert sorted(by_step) == [0, 1, 2, 3]
    assert all(len(v) == 1 for v in by_step.values())  # 2 micro-batches
    values = [next(iter(by_step[s])) for s in range(4)]
    assert len(set(values)) == 4
    logs = [h for h in trainer.state.log_history if 'simpo_loss' in h]
    assert logs and all('lam' in h and 'reward_acc' in h for h in logs)


def test_lambda_once_per_run_in_compat(tmp_path, tiny_llava, make_samples):
    trainer = _trainer(tmp_path, tiny_llava, make_samples(8),
                       MergeMixArguments(merge_num=16, compat='llava'),
                       steps=3)
    cb = _Lams()
    cb.trainer = trainer
    trainer.add_callback(cb)
    trainer.train()
    assert len(cb.per_step) == 3 and len(set(cb.per_step)) == 1


@pytest.mark.parametrize('compat', [None, 'llava'])
def test_lambda_across_processes(tmp_path, tiny_llava, make_samples,
                                 monkeypatch, compat):
    """'once' (compat): one lam on every process, as the official code
    draws it after seeding every rank alike; 'step': each process draws its
    own."""
    lams = []
    for rank in (0, 3):
        monkeypatch.setattr(TrainingArguments, 'process_index',
                            property(lambda self, rank=rank: rank))
        trainer = _trainer(tmp_path, tiny_llava, make_samples(8),
                           MergeMixArguments(merge_num=16, compat=compat))
        lams.append(trainer.current_lambda())
    assert (lams[0] == lams[1]) == (compat == 'llava')


def test_checkpoint_is_a_plain_hf_model(tmp_path, tiny_llava, make_samples):
    from transformers import LlavaForConditionalGeneration
    trainer = _trainer(tmp_path, tiny_llava, make_samples(8),
                       MergeMixArguments(method='cutmix'), steps=2)
    trainer.train()
    trainer.save_model(str(tmp_path / 'final'))
    loaded = LlavaForConditionalGeneration.from_pretrained(
        str(tmp_path / 'final'))
    trained = trainer.model.vlm.state_dict()
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, trained[k]), k
    assert (tmp_path / 'final' / 'tokenizer.json').exists()


def test_trainer_needs_the_wrapper(tmp_path, tiny_llava):
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[],
                             use_cpu=True)
    with pytest.raises(TypeError, match='MergeMixVLM'):
        MergeMixTrainer(model=tiny_llava[0], args=args)


# --------------------------------------------------------------------- #
# Learning rates of the vision tower and the projector
# --------------------------------------------------------------------- #


@pytest.mark.parametrize('kind', ['llava', 'qwen'])
def test_parameter_groups_partition_the_model(kind, tiny_llava, tiny_qwen):
    model = (tiny_llava if kind == 'llava' else tiny_qwen)[0]
    wrapper = MergeMixVLM(model, MergeMixArguments())
    parts = wrapper.parameter_groups()
    ids = {k: [id(p) for p in v] for k, v in parts.items()}
    flat = [i for v in ids.values() for i in v]
    assert len(flat) == len(set(flat))
    assert set(flat) == {id(p) for p in wrapper.parameters()}
    if kind == 'llava':
        tower, proj = model.model.vision_tower, \
            model.model.multi_modal_projector
    else:
        tower, proj = model.model.visual, model.model.visual.merger
    assert ids['projector'] == [id(p) for p in proj.parameters()]
    assert set(ids['vision_tower']) == (
        {id(p) for p in tower.parameters()} - set(ids['projector']))
    assert ids['vision_tower'] and ids['language_model']


def _sgd_trainer(tmp_path, model_bundle, samples, **lrs):
    model, processor, tok = model_bundle
    wrapper = MergeMixVLM(model, MergeMixArguments(merge_num=16))
    collator = ConversationCollator(
        tok, processor, num_image_tokens=wrapper.num_visual_tokens(),
        image_size=32, system_prompt='')
    args = TrainingArguments(
        output_dir=str(tmp_path / 'out'), per_device_train_batch_size=4,
        max_steps=1, learning_rate=1e-2, optim='sgd', weight_decay=0.1,
        lr_scheduler_type='constant', save_strategy='no', report_to=[],
        use_cpu=True, remove_unused_columns=False, disable_tqdm=True,
        seed=0)
    return MergeMixTrainer(model=wrapper, args=args, train_dataset=samples,
                           data_collator=collator, processing_class=tok,
                           **lrs)


def test_part_learning_rates_reach_the_update(tmp_path, tiny_llava,
                                              make_samples):
    """Plain SGD: every parameter moves by its part's lr times
    (grad + decay), with the Trainer's decay split kept."""
    trainer = _sgd_trainer(tmp_path, tiny_llava, make_samples(4),
                           vision_tower_lr=1e-3, mm_projector_lr=1e-1)
    wrapper = trainer.model
    parts = wrapper.parameter_groups()
    lr_of = {id(p): lr for part, lr in (('language_model', 1e-2),
                                        ('vision_tower', 1e-3),
                                        ('projector', 1e-1))
             for p in parts[part]}
    decay = set(trainer.get_decay_parameter_names(wrapper))
    decays = {id(p) for n, p in wrapper.named_parameters() if n in decay}
    before = {id(p): p.detach().clone() for p in wrapper.parameters()}
    grads = {}
    opt = trainer.create_optimizer()
    assert opt.param_groups[0]['lr'] == 1e-2  # logged lr: the LLM's

    def grab(optimizer, args, kwargs):
        for g in optimizer.param_groups:
            for p in g['params']:
                grads[id(p)] = (torch.zeros_like(p) if p.grad is None
                                else p.grad.detach().clone())

    opt.register_step_pre_hook(grab)
    trainer.train()
    checked = 0
    for p in wrapper.parameters():
        wd = 0.1 if id(p) in decays else 0.0
        if not grads[id(p)].any():
            wd = 0.0  # SGD skips a parameter without a gradient
        step = lr_of[id(p)] * (grads[id(p)] + wd * before[id(p)])
        torch.testing.assert_close(before[id(p)] - p.detach(), step,
                                   rtol=1e-4, atol=1e-7)
        checked += 1
    assert checked == len(before)


def test_part_learning_rates_follow_the_schedule(tmp_path, tiny_llava,
                                                 make_samples):
    trainer = _trainer(tmp_path, tiny_llava, make_samples(4),
                       MergeMixArguments(merge_num=16), steps=4)
    trainer.part_lrs = dict(vision_tower=1e-4, projector=None)
    trainer.args.warmup_steps = 2
    trainer.create_optimizer_and_scheduler(num_training_steps=4)
    lrs = [g['initial_lr'] for g in trainer.optimizer.param_groups]
    assert sorted(set(lrs)) == [1e-4, 1e-3]
    for _ in range(3):
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
        now = trainer.lr_scheduler.get_last_lr()
        assert now[0] > 0
        assert [n / now[0] for n in now] == pytest.approx(
            [lr / lrs[0] for lr in lrs])


@pytest.mark.parametrize('value', [0, -1e-5, float('nan'), float('inf'),
                                   True, '1e-5'])
def test_part_learning_rate_must_be_positive(tmp_path, tiny_llava,
                                             make_samples, value):
    with pytest.raises(ValueError, match='mm_projector_lr must be'):
        _sgd_trainer(tmp_path, tiny_llava, make_samples(4),
                     mm_projector_lr=value)


def test_part_learning_rate_of_a_frozen_part(tmp_path, tiny_llava,
                                             make_samples):
    trainer = _sgd_trainer(tmp_path, tiny_llava, make_samples(4),
                           vision_tower_lr=1e-5)
    trainer.model.adapter.tower.requires_grad_(False)
    with pytest.raises(ValueError, match='vision_tower_lr=1e-05 is set'):
        trainer.create_optimizer()


def test_part_learning_rates_need_the_trainers_optimizer(tmp_path,
                                                         tiny_llava,
                                                         make_samples):
    model, processor, tok = tiny_llava
    wrapper = MergeMixVLM(model, MergeMixArguments())
    opt = torch.optim.SGD(wrapper.parameters(), lr=0.1)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True,
                             report_to=[])
    with pytest.raises(ValueError, match='optimizer passed'):
        MergeMixTrainer(model=wrapper, args=args, optimizers=(opt, None),
                        vision_tower_lr=1e-5)
    ds_args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True,
                                report_to=[])
    ds_args.hf_deepspeed_config = SimpleNamespace(
        config=dict(optimizer=dict(type='AdamW')))
    with pytest.raises(ValueError, match="'optimizer' section"):
        MergeMixTrainer(model=wrapper, args=ds_args, vision_tower_lr=1e-5)
    # parts that do not own the optimised tensors (flattening wrappers)
    trainer = MergeMixTrainer(model=wrapper, args=args,
                              vision_tower_lr=1e-5)
    parts = wrapper.parameter_groups()
    wrapper.parameter_groups = lambda: {
        k: [torch.nn.Parameter(p.detach().clone()) for p in v]
        for k, v in parts.items()}
    with pytest.raises(ValueError, match="not those of the model's parts"):
        trainer.create_optimizer()
    del wrapper.parameter_groups
    # DeepSpeed set up by accelerate (its config never reaches args)
    trainer = MergeMixTrainer(model=wrapper, args=args,
                              vision_tower_lr=1e-5)
    trainer.is_deepspeed_enabled = True
    trainer.accelerator = SimpleNamespace(state=SimpleNamespace(
        deepspeed_plugin=SimpleNamespace(hf_ds_config=SimpleNamespace(
            config=dict(optimizer=dict(type='AdamW'))))))
    with pytest.raises(ValueError, match="'optimizer' section"):
        trainer._check_part_lrs_usable()
    # a DeepSpeed scheduler sets one peak rate for every group
    trainer.accelerator.state.deepspeed_plugin.hf_ds_config.config = dict(
        scheduler=dict(type='WarmupDecayLR'))
    with pytest.raises(ValueError, match="'scheduler' section"):
        trainer._check_part_lrs_usable()
    # GaLore / LOMO-like optimizers return their own parameter groups
    # (their packages are not installed here, so their answer is stood in)
    trainer = MergeMixTrainer(model=wrapper, args=args,
                              vision_tower_lr=1e-5)
    trainer.get_optimizer_cls_and_kwargs = lambda *a: (
        torch.optim.SGD, dict(lr=0.1, params=list(wrapper.parameters())))
    with pytest.raises(ValueError, match="optim='adamw_torch"):
        trainer.create_optimizer()


def test_part_learning_rates_keep_the_optimizer_passed_by_class(
        tmp_path, tiny_llava):
    """optimizer_cls_and_kwargs is the Trainer's optimizer too: the part
    rates split its groups instead of swapping it for args.optim."""
    model, _, _ = tiny_llava
    wrapper = MergeMixVLM(model, MergeMixArguments())
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True,
                             report_to=[], learning_rate=1e-2)
    trainer = MergeMixTrainer(
        model=wrapper, args=args, vision_tower_lr=1e-4,
        optimizer_cls_and_kwargs=(torch.optim.SGD,
                                  dict(lr=1e-2, momentum=0.9)))
    opt = trainer.create_optimizer()
    assert type(opt) is torch.optim.SGD
    assert all(g['momentum'] == 0.9 for g in opt.param_groups)
    tower = {id(p) for p in wrapper.parameter_groups()['vision_tower']}
    for g in opt.param_groups:
        ids = {id(p) for p in g['params']}
        assert ids <= tower or not ids & tower
        assert g['lr'] == (1e-4 if ids <= tower else 1e-2)


def test_without_part_learning_rates_the_trainers_set_up_is_kept(
        tmp_path, tiny_llava):
    """The part-rate checks apply only with a part rate: without one, an
    optimizer passed in or a DeepSpeed config with its own optimizer and
    scheduler sections are the Trainer's business, as in plain HF."""
    model, _, _ = tiny_llava
    wrapper = MergeMixVLM(model, MergeMixArguments())
    opt = torch.optim.SGD(wrapper.parameters(), lr=0.1)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True,
                             report_to=[])
    trainer = MergeMixTrainer(model=wrapper, args=args,
                              optimizers=(opt, None))
    assert trainer.create_optimizer() is opt
    ds_args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True,
                                report_to=[])
    ds_args.hf_deepspeed_config = SimpleNamespace(config=dict(
        optimizer=dict(type='AdamW'), scheduler=dict(type='WarmupLR')))
    MergeMixTrainer(model=wrapper, args=ds_args)


def test_part_learning_rates_refuse_optimizers_given_by_class_or_factory(
        tmp_path, tiny_llava):
    """optimizer_cls_and_kwargs is checked like args.optim, and a factory
    (Muon / Dion-like: a callable, not an Optimizer class) is refused."""
    model, _, _ = tiny_llava
    wrapper = MergeMixVLM(model, MergeMixArguments())
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True,
                             report_to=[])
    trainer = MergeMixTrainer(
        model=wrapper, args=args, vision_tower_lr=1e-4,
        optimizer_cls_and_kwargs=(torch.optim.SGD, dict(
            lr=0.1, params=list(wrapper.parameters()))))
    with pytest.raises(ValueError, match='builds its own parameter groups'):
        trainer.create_optimizer()

    def factory(params, **kwargs):
        return torch.optim.SGD(
            [p for g in params for p in g['params']], **kwargs)

    trainer = MergeMixTrainer(model=wrapper, args=args, vision_tower_lr=1e-4)
    trainer.get_optimizer_cls_and_kwargs = lambda *a: (factory,
                                                       dict(lr=0.1))
    with pytest.raises(ValueError, match='builds its own parameter groups'):
        trainer.create_optimizer()


def test_part_learning_rates_split_the_groups_of_a_wrapped_model(
        tmp_path, tiny_llava):
    """create_optimizer(model) with the model in a DataParallel-like
    wrapper: the parts are those of the wrapped MergeMixVLM."""
    model, _, _ = tiny_llava
    wrapper = MergeMixVLM(model, MergeMixArguments())
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True,
                             report_to=[], learning_rate=1e-2)
    trainer = MergeMixTrainer(model=wrapper, args=args, vision_tower_lr=1e-4)
    opt = trainer.create_optimizer(torch.nn.DataParallel(wrapper))
    tower = {id(p) for p in wrapper.parameter_groups()['vision_tower']}
    lrs = {(id(p) in tower, g['lr']) for g in opt.param_groups
           for p in g['params']}
    assert lrs == {(True, 1e-4), (False, 1e-2)}


def test_part_learning_rates_refuse_partly_foreign_parameters(
        tmp_path, tiny_llava):
    """One part not owning its optimised tensors is enough to refuse."""
    model, _, _ = tiny_llava
    wrapper = MergeMixVLM(model, MergeMixArguments())
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True,
                             report_to=[])
    trainer = MergeMixTrainer(model=wrapper, args=args, vision_tower_lr=1e-5)
    parts = dict(wrapper.parameter_groups())
    parts['projector'] = [torch.nn.Parameter(p.detach().clone())
                          for p in parts['projector']]
    wrapper.parameter_groups = lambda: parts
    try:
        with pytest.raises(ValueError,
                           match="not those of the model's parts"):
            trainer.create_optimizer()
    finally:
        del wrapper.parameter_groups


def test_parameter_groups_include_frozen_parameters(tiny_llava):
    model = tiny_llava[0]
    wrapper = MergeMixVLM(model, MergeMixArguments())
    frozen = model.model.language_model
    frozen.requires_grad_(False)  # a fresh model per test
    parts = wrapper.parameter_groups()
    rest = {id(p) for p in parts['language_model']}
    assert {id(p) for p in frozen.parameters()} <= rest
    assert sum(len(v) for v in parts.values()) == len(
        list(wrapper.parameters()))
