"""MergeMixTrainer: lambda schedule, logging, checkpoints."""
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
