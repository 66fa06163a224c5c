"""Laws of the MLLM path that the other test files leave open.

Each expectation is computed independently of the code under test: the
mixed SimPO value is written out by hand, the Qwen2.5-VL saliency is
rebuilt from the attention weights of Hugging Face's own eager attention,
and the chat formats are the literal template strings.
"""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import TrainingArguments

from mergemix_mm.mllm import (ConversationCollator, MergeMixArguments,
                              MergeMixTrainer, MergeMixVLM,
                              mixed_simpo_loss)
from mergemix_mm.mllm.collator import VICUNA_SYSTEM
from mergemix_mm.mllm.model import MergeMixOutput
from mergemix_mm.mllm.tome_qwen import (qwen_vision_saliency,
                                        qwen_window_index)

# --------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------- #


def _uneven_samples(make_samples):
    """Three digit samples and a text-only row (row 1) whose responses all
    have different lengths, so any row misalignment changes ``|y|``."""
    samples = make_samples(3, with_text_only=True)
    answers = ['seven', 'one two one two one two one two', 'one two three',
               'nine']
    for sample, answer in zip(samples, answers):
        sample['conversation'] = [sample['conversation'][0],
                                  ('assistant', answer)]
    return samples


def _hand_simpo(logp_w, logp_l, n, lam, beta):
    """Mixed SimPO written out in Python floats.

    Args:
        logp_w (list[float]): Summed winner log-probs per pair.
        logp_l (list[float]): Summed loser log-probs per pair.
        n (list[int]): Response length ``|y|`` per pair.
        lam (list[float]): Margin ratio per pair.
        beta (float): Reward scale.

    Returns:
        float: ``mean(-log sigmoid(beta*lw/n - beta*ll/n - (1 - lam)))``.
    """
    terms = []
    for w, lo, k, la in zip(logp_w, logp_l, n, lam):
        z = beta * w / k - beta * lo / k - (1. - la)
        terms.append(math.log1p(math.exp(-z)))
    return sum(terms) / len(terms)


def _trainer(tmp_path, model, tok, processor, samples, mm_args, **kwargs):
    """A CPU :class:`MergeMixTrainer` on the tiny LLaVA (batch 2, 1 step).

    Args:
        tmp_path (Path): Root of the output directory.
        model: The tiny ``LlavaForConditionalGeneration``.
        tok: Its tokenizer.
        processor: Its image processor.
        samples (list[dict]): Training items.
        mm_args (MergeMixArguments): MergeMix settings.
        **kwargs: Overrides of the ``TrainingArguments``.

    Returns:
        MergeMixTrainer: The trainer (not trained yet).
    """
    wrapper = MergeMixVLM(model, mm_args)
    collator = ConversationCollator(
        tok, processor, num_image_tokens=wrapper.num_visual_tokens(),
        image_size=32, system_prompt='')
    settings = dict(
        output_dir=str(tmp_path / 'out'), per_device_train_batch_size=2,
        max_steps=1, learning_rate=1e-3, logging_steps=1,
        save_strategy='no', report_to=[], use_cpu=True,
        remove_unused_columns=False, disable_tqdm=True, seed=0)
    settings.update(kwargs)
    return MergeMixTrainer(model=wrapper, args=TrainingArguments(**settings),
                           train_dataset=samples, data_collator=collator,
                           processing_class=tok)


# --------------------------------------------------------------------- #
# mixed SimPO loss
# --------------------------------------------------------------------- #


def test_simpo_edge_cases():
    """An empty batch of pairs gives 0 with a graph (not NaN) and a margin
    ratio outside ``[0, 1]`` is refused."""
    w = torch.zeros(0, requires_grad=True)
    for reduction in ('mean', 'sum'):
        zero = mixed_simpo_loss(w, torch.zeros(0),
                                torch.zeros(0, dtype=torch.long), 0.5,
                                reduction=reduction)
        assert zero.item() == 0.0 and zero.requires_grad
    for lam in (-0.1, 1.5, torch.tensor([0.5, 1.01])):
        with pytest.raises(ValueError, match='lam must lie in'):
            mixed_simpo_loss(torch.zeros(2), torch.zeros(2),
                             torch.ones(2, dtype=torch.long), lam)


def test_simpo_is_stable_for_large_reward_gaps():
    """``-log sigmoid(z)`` stays finite (``~ -z``) for very negative ``z``
    and goes to 0 for very positive ``z``."""
    n = torch.ones(2, dtype=torch.long)
    losses = mixed_simpo_loss(torch.tensor([-500., 500.]), torch.zeros(2), n,
                              1.0, reduction='none')
    assert torch.isfinite(losses).all()
    assert losses[0].item() == pytest.approx(500.0)
    assert losses[1].item() == pytest.approx(0.0, abs=1e-30)


def test_model_simpo_is_the_hand_formula_per_row(tiny_llava, make_samples,
                                                 make_llava_batch):
    """The model's SimPO term uses each pair's *own* response length
    ``|y|`` (text-only row in between, unequal responses), the configured
    beta and the margin ``1 - floor(lam * N) / N``."""
    model, processor, tok = tiny_llava
    wrapper = MergeMixVLM(model, MergeMixArguments(beta=0.5)).train()
    batch = make_llava_batch(wrapper, processor, tok,
                             _uneven_samples(make_samples))
    labels = batch['labels']
    n_all = (labels[:, 1:] != -100).sum(1)
    assert len(set(n_all.tolist())) == 4
    out = wrapper(**batch, lam=0.3,
                  generator=torch.Generator().manual_seed(0))
    rows = [0, 2, 3]
    assert out.pair_rows.tolist() == rows
    lw = out.logp_winner.detach()[rows].tolist()
    ll = out.logp_loser.detach().tolist()
    expected = _hand_simpo(lw, ll, n_all[rows].tolist(), [19 / 64] * 3, 0.5)
    assert out.simpo_loss.item() == pytest.approx(expected, abs=1e-6)


def test_no_grad_loser_has_the_same_values(tiny_llava, make_samples,
                                           make_llava_batch):
    """``loser_grad=False`` changes only the gradient: with the same pairs
    the loser log-probs and the loss equal those of the default path, also
    with a text-only row before the image rows."""
    model, processor, tok = tiny_llava
    wrappers = [
        MergeMixVLM(model, MergeMixArguments(loser_grad=g)).train()
        for g in (True, False)
    ]
    batch = make_llava_batch(wrappers[0], processor, tok,
                             _uneven_samples(make_samples))
    # the same rows left-padded: the padding must be masked in both passes
    left = {k: v.clone() if torch.is_tensor(v) else v
            for k, v in batch.items()}
    for row, n in enumerate(batch['attention_mask'].sum(1).tolist()):
        for key in ('input_ids', 'attention_mask', 'labels'):
            left[key][row] = batch[key][row].roll(len(left[key][row]) - n)
    assert (left['attention_mask'][:, 0] == 0).any()
    for inputs in (batch, left):
        grad, no_grad = [
            w(**inputs, lam=0.6, generator=torch.Generator().manual_seed(1))
            for w in wrappers
        ]
        assert grad.pair_rows.tolist() == no_grad.pair_rows.tolist() == [
            0, 2, 3]
        assert grad.logp_loser.requires_grad
        assert not no_grad.logp_loser.requires_grad
        torch.testing.assert_close(no_grad.logp_loser,
                                   grad.logp_loser.detach(), atol=1e-4,
                                   rtol=1e-5)
        torch.testing.assert_close(no_grad.loss.detach(), grad.loss.detach(),
                                   atol=1e-5, rtol=1e-5)


def test_eval_forward_is_plain_sft(tiny_llava, make_samples,
                                   make_llava_batch):
    """In eval mode the wrapper computes the SFT loss only (no loser)."""
    model, processor, tok = tiny_llava
    wrapper = MergeMixVLM(model, MergeMixArguments(merge_num=16)).eval()
    batch = make_llava_batch(wrapper, processor, tok, make_samples(4))
    with torch.no_grad():
        out = wrapper(**batch)
    assert out.simpo_loss is None and out.pair_rows is None
    assert out.logp_loser is None
    assert torch.equal(out.loss, out.sft_loss)


def test_full_feature_strategy_keeps_the_cls_token(
        tiny_llava, make_samples, make_llava_batch):
    """``vision_feature_select_strategy='full'`` feeds CLS too: one more
    visual token per image, and the log-probs still equal HF's loss."""
    model, processor, tok = tiny_llava
    model.config.vision_feature_select_strategy = 'full'
    budget = MergeMixVLM(model, MergeMixArguments(merge_num=16))
    assert budget.num_visual_tokens() == 64 - 16 + 1
    wrapper = MergeMixVLM(model, MergeMixArguments(method='sft')).eval()
    assert wrapper.num_visual_tokens() == 65
    batch = make_llava_batch(wrapper, processor, tok, make_samples(2))
    with torch.no_grad():
        ref = model(input_ids=batch['input_ids'],
                    attention_mask=batch['attention_mask'],
                    pixel_values=batch['pixel_values'],
                    labels=batch['labels'])
        out = wrapper(**batch)
    torch.testing.assert_close(out.sft_loss, ref.loss, atol=1e-5,
                               rtol=1e-5)


# --------------------------------------------------------------------- #
# trainer
# --------------------------------------------------------------------- #


def test_gradient_accumulation_divides_the_loss(tmp_path, tiny_llava,
                                                make_samples):
    """With ``gradient_accumulation_steps=2`` every micro-batch loss is
    back-propagated divided by 2 (the loss is a per-micro-batch mean)."""
    model, processor, tok = tiny_llava
    trainer = _trainer(tmp_path, model, tok, processor, make_samples(4),
                       MergeMixArguments(merge_num=16),
                       gradient_accumulation_steps=2)
    computed, backed = [], []
    compute = trainer.compute_loss
    backward = trainer.accelerator.backward

    def spy_compute(*args, **kwargs):
        loss = compute(*args, **kwargs)
        computed.append(float(loss.detach()))
        return loss

    def spy_backward(loss, **kwargs):
        backed.append(float(loss.detach()))
        return backward(loss, **kwargs)

    trainer.compute_loss = spy_compute
    trainer.accelerator.backward = spy_backward
    trainer.train()
    assert len(computed) == len(backed) == 2
    assert backed == pytest.approx([c / 2 for c in computed], rel=1e-6)


def _fake_output(logp_w, logp_l, lam, lam_kept, sft, simpo):
    """A :class:`MergeMixOutput` of 4 rows with pairs at rows 0, 2, 3."""
    return MergeMixOutput(
        loss=torch.tensor(0.), sft_loss=torch.tensor(sft),
        simpo_loss=torch.tensor(simpo),
        logp_winner=torch.tensor(logp_w), num_tokens=torch.tensor([2, 9,
                                                                   4, 1]),
        logp_loser=torch.tensor(logp_l), pair_rows=torch.tensor([0, 2, 3]),
        lam=torch.tensor(lam), lam_kept=torch.tensor(lam_kept))


def test_logged_statistics_are_micro_batch_means(tmp_path, tiny_llava):
    """Logged ``reward_acc`` (fraction of pairs whose clean image scores
    higher), ``lam`` (the margin ratio), SFT and SimPO terms are means over
    the micro-batches recorded since the last training log; an eval log in
    between keeps them, and nothing leaks into the next log."""
    model, processor, tok = tiny_llava
    trainer = _trainer(tmp_path, model, tok, processor, [],
                       MergeMixArguments(compat='llava'))
    # pairs are rows 0, 2, 3: winners [-1, -5, -2] vs losers [-2, -3, -2.5]
    trainer._record(_fake_output([-1., 9., -5., -2.], [-2., -3., -2.5],
                                 [.25] * 3, [.3] * 3, 1.0, 0.5))
    trainer.log({'eval_loss': 0.1})
    assert 'reward_acc' not in trainer.state.log_history[-1]
    trainer._record(_fake_output([-4., 9., -1., -1.], [-3., -2., -2.],
                                 [.75] * 3, [.9] * 3, 3.0, 1.5))
    trainer.log({'loss': 2.0})
    logged = trainer.state.log_history[-1]
    assert logged['reward_acc'] == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert logged['lam'] == pytest.approx(0.5)  # not lam_kept (0.6)
    assert logged['sft_loss'] == pytest.approx(2.0)
    assert logged['simpo_loss'] == pytest.approx(1.0)
    trainer._record(_fake_output([-1., 9., -1., -1.], [-2., -2., -2.],
                                 [.5] * 3, [.5] * 3, 7.0, 0.25))
    trainer.log({'loss': 7.0})
    logged = trainer.state.log_history[-1]
    assert logged['reward_acc'] == 1.0 and logged['sft_loss'] == 7.0
    trainer.log({'loss': 7.0})
    assert 'sft_loss' not in trainer.state.log_history[-1]


def test_eval_loss_is_not_recorded_as_training_stats(tmp_path, tiny_llava,
                                                     make_samples):
    """Evaluation steps do not feed the logged training statistics."""
    model, processor, tok = tiny_llava
    trainer = _trainer(tmp_path, model, tok, processor, make_samples(2),
                       MergeMixArguments(merge_num=16))
    batch = trainer.data_collator(make_samples(2))
    trainer.model.eval()
    loss = trainer.prediction_step(trainer.model, batch, True)[0]
    assert torch.isfinite(loss)
    assert trainer._stats == {}


def test_resume_loads_the_checkpoint_weights(tmp_path, tiny_llava,
                                             make_samples):
    """Resuming a differently initialised model from a checkpoint gives
    exactly the checkpoint's weights."""
    from mergemix_mm.mllm import build_tiny_llava
    model, processor, tok = tiny_llava
    first = _trainer(tmp_path, model, tok, processor, make_samples(2),
                     MergeMixArguments(merge_num=16), save_strategy='steps',
                     save_steps=1)
    first.train()
    other, _ = build_tiny_llava(tok, seed=1)
    second = _trainer(tmp_path, other, tok, processor, make_samples(2),
                      MergeMixArguments(merge_num=16))
    second.train(resume_from_checkpoint=str(tmp_path / 'out' /
                                            'checkpoint-1'))
    trained = first.model.vlm.state_dict()
    for key, value in other.state_dict().items():
        assert torch.equal(value, trained[key]), key


# --------------------------------------------------------------------- #
# settings
# --------------------------------------------------------------------- #


def test_defaults_are_the_paper_intended_method():
    """ALGORITHM.md §10 B1-B8 defaults and the ResizeMix range of §9.5."""
    args = MergeMixArguments()
    assert (args.method, args.merge_num, args.beta) == ('mergemix', 0, 1.0)
    assert args.loss_combine == 'mean' and args.loser_grad is True
    assert args.lam_schedule == 'step' and args.length_norm == 'tokens'
    assert args.topk_space == 'recovered' and args.partner == 'derangement'
    assert args.margin_lam == 'kept' and args.compat is None
    assert args.prop_attn is False and args.attn_layer is None
    assert args.token_order == 'merged'
    assert (args.resizemix_min, args.resizemix_max) == (0.1, 0.8)


def test_resolved_is_a_copy():
    """``resolved()`` applies every compat override to a copy only."""
    args = MergeMixArguments(compat='llava')
    resolved = args.resolved()
    assert resolved is not args
    assert (resolved.lam_schedule, resolved.loser_grad,
            resolved.length_norm, resolved.topk_space, resolved.partner,
            resolved.margin_lam) == ('once', False, 'padded', 'merged',
                                     'randperm', 'nominal')
    assert (args.lam_schedule, args.loser_grad, args.length_norm,
            args.topk_space, args.partner, args.margin_lam) == (
                'step', True, 'tokens', 'recovered', 'derangement', 'kept')
    raster = MergeMixArguments(compat='llava', token_order='raster')
    assert raster.resolved().token_order == 'merged'  # the official order
    assert raster.token_order == 'raster'


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(beta=float('inf')), ValueError, 'beta=inf'),
    (dict(beta=float('nan')), ValueError, 'beta=nan'),
    (dict(loser_grad='False'), TypeError, 'loser_grad'),
    (dict(prop_attn=1), TypeError, 'prop_attn'),
    (dict(attn_layer=True), TypeError, 'attn_layer=True'),
    (dict(qwen_saliency_block=1.0), TypeError, 'qwen_saliency_block'),
    (dict(resizemix_min=0.0), ValueError, 'resizemix_min=0.0'),
    (dict(resizemix_min=0.5, resizemix_max=0.4), ValueError,
     'resizemix_min=0.5'),
    (dict(merge_num=True), ValueError, 'merge_num=True'),
    (dict(token_order='sorted'), ValueError, "token_order='sorted'"),
])
def test_bad_settings_are_refused(kwargs, error, match):
    """Each bad setting raises an error that names it."""
    with pytest.raises(error, match=match):
        MergeMixArguments(**kwargs)


# --------------------------------------------------------------------- #
# collator
# --------------------------------------------------------------------- #


def test_vicuna_format_labels_and_right_padding(tiny_llava, make_samples):
    """Literal LLaVA-1.5 ``vicuna_v1`` text (system prompt once, ``</s>``
    after every answer), labels exactly on the answers, right padding with
    a zero attention mask and ``-100`` labels on the pads."""
    _, processor, tok = tiny_llava
    samples = make_samples(2)
    samples[0]['conversation'] = [('user', '<image>\nWhich?'),
                                  ('assistant', 'seven'),
                                  ('user', 'And?'), ('assistant', 'two')]
    samples[1]['conversation'] = [('user', '<image>\nWhich?'),
                                  ('assistant', 'one')]
    col = ConversationCollator(tok, processor, num_image_tokens=3,
                               image_size=32)
    batch = col(samples)
    image = '<image>' * 3
    texts = [
        f'<s>{VICUNA_SYSTEM} USER: {image}\nWhich? ASSISTANT: seven</s>'
        'USER: And? ASSISTANT: two</s>',
        f'<s>{VICUNA_SYSTEM} USER: {image}\nWhich? ASSISTANT: one</s>'
    ]
    answers = [' seven</s> two</s>', ' one</s>']
    L = batch['input_ids'].shape[1]
    for row, (text, answer) in enumerate(zip(texts, answers)):
        ids, lab = batch['input_ids'][row], batch['labels'][row]
        mask = batch['attention_mask'][row]
        n = int(mask.sum())
        assert mask.tolist() == [1] * n + [0] * (L - n)
        assert tok.decode(ids[:n]) == text
        assert (ids[n:] == tok.pad_token_id).all()
        assert (lab[n:] == -100).all()
        scored = lab != -100
        assert torch.equal(lab[scored], ids[scored])
        assert tok.decode(lab[scored]) == answer
    assert int(batch['attention_mask'][0].sum()) == L  # the longest row
    # max_length is inclusive
    n = int(batch['attention_mask'][1].sum())
    ConversationCollator(tok, processor, num_image_tokens=3, image_size=32,
                         max_length=n)(samples[1:])
    with pytest.raises(ValueError, match=f'max_length={n - 1}'):
        ConversationCollator(tok, processor, num_image_tokens=3,
                             image_size=32, max_length=n - 1)(samples[1:])


def test_qwen_format_and_labels(tiny_qwen, make_samples):
    """Literal Qwen2.5-VL chat text with the vision markers around the
    ``(h/2)*(w/2)`` image tokens; only ``answer<|im_end|>`` is labelled."""
    _, processor, tok = tiny_qwen
    samples = make_samples(1)
    samples[0]['conversation'] = [('user', '<image>\nWhich?'),
                                  ('assistant', 'seven'),
                                  ('user', 'And?'), ('assistant', 'two')]
    batch = ConversationCollator(tok, processor,
                                 template='qwen2_5_vl')(samples)
    t, h, w = batch['image_grid_thw'][0].tolist()
    n_img = t * h * w // 4
    assert n_img == 16  # a 32x32 image, patch 4, merge 2
    text = ('<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n'
            '<|im_start|>user\n<|vision_start|>' + '<|image_pad|>' * n_img +
            '<|vision_end|>\nWhich?<|im_end|>\n<|im_start|>assistant\n'
            'seven<|im_end|>\n<|im_start|>user\nAnd?<|im_end|>\n'
            '<|im_start|>assistant\ntwo<|im_end|>\n')
    ids, lab = batch['input_ids'][0], batch['labels'][0]
    assert tok.decode(ids) == text
    scored = lab != -100
    assert torch.equal(lab[scored], ids[scored])
    assert tok.decode(lab[scored]) == 'seven<|im_end|>two<|im_end|>'
    is_img = ids == tok.convert_tokens_to_ids('<|image_pad|>')
    assert torch.equal(batch['mm_token_type_ids'][0].bool(), is_img)


# --------------------------------------------------------------------- #
# Qwen2.5-VL saliency and pairs
# --------------------------------------------------------------------- #


def _qwen_images(sizes, seed=0):
    """Random RGB PIL images of the given ``(height, width)`` sizes."""
    rng = np.random.RandomState(seed)
    return [Image.fromarray((rng.rand(h, w, 3) * 255).astype('uint8'))
            for h, w in sizes]


def _sharpen(visual):
    """Scale the tower's qkv weights: the random init attends almost
    uniformly, which would leave the saliency ranking to rounding noise."""
    with torch.no_grad():
        for block in visual.blocks:
            block.attn.qkv.weight.mul_(16.)
    return visual


def _eager_unit_saliency(visual, pixel_values, grid_thw, block,
                         monkeypatch):
    """Reference saliency from HF's eager attention weights at ``block``.

    Mean over heads and queries of each image, summed over every 2x2 merge
    unit, put back in raster order with the tower's window permutation.

    Args:
        visual: The Qwen2.5-VL vision tower.
        pixel_values (Tensor): Processor rows of the images.
        grid_thw (Tensor): ``[n, 3]`` grids.
        block (int): Full-attention block index.
        monkeypatch: pytest's monkeypatch fixture.

    Returns:
        list[Tensor]: One ``[(h/2) * (w/2)]`` tensor per image.
    """
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as mq
    target = visual.blocks[block].attn
    weights = []
    eager = mq.eager_attention_forward

    def spy(module, *args, **kwargs):
        out, w = eager(module, *args, **kwargs)
        if module is target:
            weights.append(w[0].float())
        return out, w

    monkeypatch.setattr(mq, 'eager_attention_forward', spy)
    impl = visual.config._attn_implementation
    visual.config._attn_implementation = 'eager'
    try:
        with torch.no_grad():
            visual(pixel_values, grid_thw=grid_thw)
    finally:
        visual.config._attn_implementation = impl
        monkeypatch.setattr(mq, 'eager_attention_forward', eager)
    assert len(weights) == grid_thw.shape[0]  # one chunk per image
    window_units = torch.cat([w.mean(dim=(0, 1)) for w in weights])
    window_units = window_units.reshape(-1, 4).sum(-1)
    order = qwen_window_index(visual, grid_thw)
    raster = window_units[torch.argsort(order)]
    return list(torch.split(raster, (grid_thw.prod(-1) // 4).tolist()))


def test_qwen_saliency_equals_eager_attention_received(tiny_qwen,
                                                       monkeypatch):
    """The hook-based saliency (default: last full-attention block, or an
    explicit one) equals the reference built from HF's eager weights."""
    model, processor, _ = tiny_qwen
    visual = _sharpen(model.model.visual.eval())
    out = processor(images=_qwen_images([(32, 48), (40, 40)]),
                    return_tensors='pt')
    pv, grid = out['pixel_values'], out['image_grid_thw']
    got = qwen_vision_saliency(visual, pv, grid)  # default: last full block
    ref = _eager_unit_saliency(visual, pv, grid, 3, monkeypatch)
    assert [g.numel() for g in got] == [24, 25]
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, atol=1e-6, rtol=1e-4)
        assert g.std() > 0.1 * g.mean()  # far from uniform
    ref1 = _eager_unit_saliency(visual, pv, grid, 1, monkeypatch)
    got1 = qwen_vision_saliency(visual, pv, grid, block_index=1)
    for g, r in zip(got1, ref1):
        torch.testing.assert_close(g, r, atol=1e-6, rtol=1e-4)


def test_qwen_saliency_in_query_chunks(tiny_qwen, monkeypatch):
    """With a chunk budget smaller than one image's attention matrix the
    queries are processed in chunks (including a ragged last one), with the
    same saliency as in one piece."""
    from mergemix_mm.mllm import tome_qwen
    model, processor, _ = tiny_qwen
    visual = _sharpen(model.model.visual.eval())
    out = processor(images=_qwen_images([(32, 48), (40, 40)]),
                    return_tensors='pt')
    pv, grid = out['pixel_values'], out['image_grid_thw']
    whole = qwen_vision_saliency(visual, pv, grid)
    heads = visual.blocks[0].attn.num_heads
    calls = []
    matmul = torch.Tensor.__matmul__

    def spy(a, b):
        calls.append(a.shape[-2])
        return matmul(a, b)

    # 96 and 100 patches per image: chunks of 7 queries, the last ragged
    monkeypatch.setattr(tome_qwen, 'SALIENCY_CHUNK_ELEMENTS',
                        heads * 100 * 7)
    monkeypatch.setattr(torch.Tensor, '__matmul__', spy)
    chunked = qwen_vision_saliency(visual, pv, grid)
    monkeypatch.undo()
    assert max(calls) <= 7 and len(calls) > 2 * 96 // 7
    for a, b in zip(chunked, whole):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-5)


def test_qwen_non_square_pairs_keep_their_top_units(tiny_qwen, monkeypatch):
    """Two 32x48 images interleaved with two 40x40 ones: pairs form inside
    each size, are reported in batch-row order, and each loser keeps
    exactly its own ``floor(lam * N)`` most salient 8x8 units."""
    model, processor, tok = tiny_qwen
    _sharpen(model.model.visual)
    wrapper = MergeMixVLM(model, MergeMixArguments()).train()
    samples = [dict(id=f'q{i}', image=img, conversation=[
        ('user', '<image>\nWhich digit is shown?'), ('assistant', word)])
        for i, (img, word) in enumerate(zip(
            _qwen_images([(32, 48), (40, 40), (32, 48), (40, 40)], seed=3),
            ['one', 'two', 'seven', 'nine']))]
    batch = ConversationCollator(tok, processor,
                                 template='qwen2_5_vl')(samples)
    grid = batch['image_grid_thw']
    assert grid.tolist() == [[1, 8, 12], [1, 10, 10]] * 2
    ref = _eager_unit_saliency(model.model.visual, batch['pixel_values'],
                               grid, 3, monkeypatch)
    captured = {}
    build = wrapper.adapter.build_losers

    def spy(*args, **kwargs):
        captured['losers'] = build(*args, **kwargs)
        return captured['losers']

    monkeypatch.setattr(wrapper.adapter, 'build_losers', spy)
    out = wrapper(**batch, lam=0.5)
    assert out.pair_rows.tolist() == [0, 1, 2, 3]
    rows = torch.split(batch['pixel_values'], grid.prod(-1).tolist())
    loser_rows = torch.split(captured['losers'].pixel_values,
                             [96, 100, 96, 100])
    for i, p in enumerate([2, 3, 0, 1]):
        n = rows[i].shape[0] // 4
        k = n // 2
        units = loser_rows[i].reshape(n, -1)
        own = (units == rows[i].reshape(n, -1)).all(1)
        other = (units == rows[p].reshape(n, -1)).all(1)
        assert (own | other).all() and int(own.sum()) == k
        ranked = ref[i].sort(descending=True).values
        assert ranked[k - 1] - ranked[k] > 1e-5  # a clear top k
        top = set(ref[i].topk(k).indices.tolist())
        assert set(own.nonzero().flatten().tolist()) == top
    torch.testing.assert_close(out.lam,
                               torch.tensor([12 / 24, 12 / 25] * 2))


# --------------------------------------------------------------------- #
# CLI
# --------------------------------------------------------------------- #


def test_cli_json_config_freeze_and_pixel_budget(tmp_path, make_samples,
                                                 mllm_tool):
    """A single ``.json`` argument is the config; ``freeze_vision_tower``
    freezes the vision blocks (not the LLM, nor the merger, Qwen's
    projector); ``min_pixels`` /
    ``max_pixels`` set the Qwen image processor's shortest / longest edge
    budget."""
    tool = mllm_tool('train')
    folder = tmp_path / 'images'
    folder.mkdir()
    records = []
    for s in make_samples(4):
        s['image'].save(folder / f'{s["id"]}.png')
        records.append(dict(id=s['id'], image=f'{s["id"]}.png',
                            conversations=[
                                {'from': 'human',
                                 'value': s['conversation'][0][1]},
                                {'from': 'gpt',
                                 'value': s['conversation'][1][1]}]))
    (tmp_path / 'train.json').write_text(json.dumps(records))
    config = dict(tiny='qwen2_5_vl', data_path=str(tmp_path / 'train.json'),
                  image_folder=str(folder), output_dir=str(tmp_path / 'out'),
                  max_steps=1, per_device_train_batch_size=4, use_cpu=True,
                  report_to='none', save_strategy='no', disable_tqdm=True,
                  freeze_vision_tower=True, min_pixels=20 * 20,
                  max_pixels=40 * 40, mm_projector_lr=5e-4)
    path = tmp_path / 'config.json'
    path.write_text(json.dumps(config))
    trainer = tool.main([str(path)])
    assert trainer.state.global_step == 1
    vlm = trainer.model.vlm
    tower = [vlm.model.visual.patch_embed, *vlm.model.visual.blocks]
    assert not any(p.requires_grad for m in tower for p in m.parameters())
    assert all(p.requires_grad
               for p in vlm.model.language_model.parameters())
    # the merger is Qwen's projector: trainable, like LLaVA's projector
    assert all(p.requires_grad
               for p in vlm.model.visual.merger.parameters())
    # --mm_projector_lr reaches the optimizer: the merger's own lr
    by_lr = {}
    for g in trainer.optimizer.param_groups:
        by_lr.setdefault(g['initial_lr'], set()).update(
            id(p) for p in g['params'])
    assert by_lr.keys() == {5e-4, trainer.args.learning_rate}
    assert by_lr[5e-4] == {id(p) for p in vlm.model.visual.merger.parameters()}
    saved = json.loads((tmp_path / 'out' /
                        'preprocessor_config.json').read_text())
    assert saved['size'] == {'shortest_edge': 400, 'longest_edge': 1600}
