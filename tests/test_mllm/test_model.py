"""MergeMixVLM forward: pairs, gradients, text-only rows, token budget."""
import pytest
import torch

from mergemix_mm.mllm import (ConversationCollator, MergeMixArguments,
                              MergeMixVLM)


def _capture_projector(model):
    calls = []

    def hook(module, args, output):
        if output.requires_grad:
            output.retain_grad()
        calls.append(output)

    handle = model.model.multi_modal_projector.register_forward_hook(hook)
    return calls, handle


@pytest.mark.parametrize('compat', [None, 'llava'])
def test_gradient_reaches_loser_only_by_default(tiny_llava, make_samples,
                                                make_llava_batch, compat):
    model, processor, tok = tiny_llava
    wrapper = MergeMixVLM(model, MergeMixArguments(merge_num=16,
                                                   compat=compat)).train()
    batch = make_llava_batch(wrapper, processor, tok, make_samples(4))
    calls, handle = _capture_projector(model)
    out = wrapper(**batch, lam=0.5)
    handle.remove()
    out.loss.backward()
    winner, loser = calls  # winner features, then loser features
    assert winner.grad is not None and winner.grad.abs().sum() > 0
    if compat is None:
        assert out.logp_loser.requires_grad
        assert loser.grad is not None and loser.grad.abs().sum() > 0
    else:
        assert not out.logp_loser.requires_grad
        assert not loser.requires_grad
    # the loser really is a different (mixed) image of the same rows
    assert out.pair_rows.tolist() == [0, 1, 2, 3]
    assert not torch.allclose(out.logp_loser, out.logp_winner)
    # SimPO gradient alone: both branches (default) or winner only (compat)
    model.zero_grad()
    calls, handle = _capture_projector(model)
    out = wrapper(**batch, lam=0.5)
    handle.remove()
    out.simpo_loss.backward()
    assert calls[0].grad.abs().sum() > 0
    if compat is None:
        assert calls[1].grad.abs().sum() > 0


def test_loss_composition(tiny_llava, make_samples, make_llava_batch):
    model, processor, tok = tiny_llava
    for combine, w in (('mean', 0.5), ('sum', 1.0)):
        wrapper = MergeMixVLM(model, MergeMixArguments(
            loss_combine=combine)).train()
        batch = make_llava_batch(wrapper, processor, tok, make_samples(4))
        out = wrapper(**batch, lam=0.3)
        assert torch.allclose(out.loss, w * out.sft_loss + w * out.simpo_loss)
        # margin uses the realised kept fraction floor(0.3 * 64) / 64
        assert torch.allclose(out.lam, torch.full((4, ), 19 / 64))
    sft = MergeMixVLM(model, MergeMixArguments(method='sft')).train()
    out = sft(**batch)
    assert out.simpo_loss is None and torch.equal(out.loss, out.sft_loss)


def test_compat_length_is_the_official_slice_length(tiny_llava,
                                                    make_samples,
                                                    make_llava_batch):
    """``length_norm='padded'`` divides by the official slice length: the
    padded label length without the visual tokens (the official labels keep
    one <image> placeholder), not the expanded label length."""
    from mergemix_mm.mllm.loss import mixed_simpo_loss
    model, processor, tok = tiny_llava
    wrapper = MergeMixVLM(model, MergeMixArguments(merge_num=16,
                                                   compat='llava')).train()
    batch = make_llava_batch(wrapper, processor, tok, make_samples(4))
    out = wrapper(**batch, lam=0.3)
    n_visual = (batch['input_ids'] == model.config.image_token_id).sum(1)
    assert n_visual.tolist() == [wrapper.num_visual_tokens()] * 4 == [48] * 4
    rows = out.pair_rows
    length = batch['labels'].shape[1] - n_visual[rows]
    expected = mixed_simpo_loss(
        out.logp_winner[rows], out.logp_loser, out.num_tokens[rows],
        torch.full((len(rows), ), 0.3), beta=1.0, length=length)
    torch.testing.assert_close(out.simpo_loss, expected)
    assert (length < batch['labels'].shape[1] - 40).all()


@pytest.mark.parametrize('method', ['cutmix', 'resizemix'])
def test_box_mixes_margin_is_the_realised_share_also_in_compat(
        tiny_llava, make_samples, make_llava_batch, method):
    """The official augmenter returns the realised kept fraction for the
    box mixes, so compat keeps ``margin_lam='kept'`` for them (ResizeMix's
    drawn lam sizes the pasted box: 1 - lam would invert the margin)."""
    resolved = MergeMixArguments(method=method, compat='llava').resolved()
    assert resolved.margin_lam == 'kept' and resolved.lam_schedule == 'once'
    assert MergeMixArguments(compat='llava').resolved().margin_lam == \
        'nominal'
    with pytest.raises(ValueError, match="margin_lam='nominal' with method"):
        MergeMixArguments(method=method, margin_lam='nominal')
    model, processor, tok = tiny_llava
    wrapper = MergeMixVLM(model, MergeMixArguments(method=method,
                                                   compat='llava')).train()
    batch = make_llava_batch(wrapper, processor, tok, make_samples(4))
    torch.manual_seed(0)
    out = wrapper(**batch, lam=0.9)
    assert torch.equal(out.lam, out.lam_kept)  # the margin's share
    assert not torch.allclose(out.lam, torch.full_like(out.lam, 0.9))


def test_text_only_rows_form_no_pair(tiny_llava, make_samples,
                                     make_llava_batch):
    model, processor, tok = tiny_llava
    wrapper = MergeMixVLM(model, MergeMixArguments(merge_num=8)).train()
    samples = make_samples(3, with_text_only=True)  # text-only row is 1
    batch = make_llava_batch(wrapper, processor, tok, samples)
    assert batch['has_image'].tolist() == [True, False, True, True]
    assert batch['pixel_values'].shape[0] == 3
    out = wrapper(**batch, lam=0.7)
    assert out.pair_rows.tolist() == [0, 2, 3]
    assert out.logp_winner.shape == (4, ) and out.logp_loser.shape == (3, )
    # the text-only row still contributes to SFT
    assert out.num_tokens[1] > 0
    # a batch of text-only samples is plain SFT (SimPO term 0)
    text = [s for s in samples if s['image'] is None] * 2
    out = wrapper(**make_llava_batch(wrapper, processor, tok, text), lam=0.7)
    assert out.simpo_loss.item() == 0.0
    assert torch.allclose(out.loss, 0.5 * out.sft_loss)


def test_single_image_batch_warns_and_trains_sft(tiny_llava, make_samples,
                                                 make_llava_batch):
    model, processor, tok = tiny_llava
    wrapper = MergeMixVLM(model).train()
    batch = make_llava_batch(wrapper, processor, tok, make_samples(1))
    out = wrapper(**batch, lam=0.5)
    assert out.pair_rows is None and out.simpo_loss.item() == 0.0


def test_visual_token_budget_is_asserted(tiny_llava, make_samples):
    model, processor, tok = tiny_llava
    wrapper = MergeMixVLM(model, MergeMixArguments(merge_num=32))
    assert wrapper.num_visual_tokens() == 32
    good = ConversationCollator(tok, processor, num_image_tokens=32,
                                image_size=32, system_prompt='')
    batch = good(make_samples(2))
    assert ((batch['input_ids'] == model.config.image_token_id).sum(1) ==
            32).all()
    wrapper.train()(**batch, lam=0.5)
    bad = ConversationCollator(tok, processor, num_image_tokens=64,
                               image_size=32, system_prompt='')
    with pytest.raises(ValueError, match='merge_num=32'):
        wrapper(**bad(make_samples(2)), lam=0.5)
    with pytest.raises(ValueError, match='merge_num=64'):
        MergeMixVLM(model, MergeMixArguments(merge_num=64))
    # inference budget can differ from the training budget; the error then
    # names the merge count in force (it named the built one)
    wrapper.set_merge_num(48)
    assert wrapper.num_visual_tokens() == 16
    with pytest.raises(ValueError, match=r'images \(merge_num=48\)'):
        wrapper(**good(make_samples(2)), lam=0.5)


def test_eval_mode_is_sft_and_generate_runs(tiny_llava, make_samples):
    model, processor, tok = tiny_llava
    wrapper = MergeMixVLM(model, MergeMixArguments(merge_num=16)).eval()
    collator = ConversationCollator(tok, processor, num_image_tokens=48,
                                    image_size=32, system_prompt='',
                                    prompt_only=True)
    batch = collator(make_samples(3))
    assert (batch['attention_mask'][:, -1] == 1).all()  # left padded
    assert batch['answers'][0] in ('zero one two three four five six seven '
                                   'eight nine').split()
    gen = wrapper.generate(batch['input_ids'], batch['attention_mask'],
                           batch['pixel_values'], max_new_tokens=3,
                           do_sample=False)
    assert gen.shape[0] == 3 and 1 <= gen.shape[1] <= 3


def test_loser_rows_align_with_pair_rows(tiny_llava, make_samples,
                                         make_llava_batch, monkeypatch):
    """Default path (loser grad): with a text-only row in the batch, each
    loser log-prob is that of its own row's response given its own mixed
    image, recomputed row by row with the stock HF LLaVA forward."""
    from mergemix_mm.mllm.loss import mixed_simpo_loss, sequence_logps
    model, processor, tok = tiny_llava
    wrapper = MergeMixVLM(model, MergeMixArguments(merge_num=0)).train()
    assert wrapper.mm_args.loser_grad and wrapper.mm_args.compat is None
    samples = make_samples(3, with_text_only=True)  # text-only row is 1
    batch = make_llava_batch(wrapper, processor, tok, samples)
    captured = []
    build = wrapper.adapter.build_losers

    def spy(*args, **kwargs):
        losers = build(*args, **kwargs)
        captured.append(losers)
        return losers

    monkeypatch.setattr(wrapper.adapter, 'build_losers', spy)
    out = wrapper(**batch, lam=0.5,
                  generator=torch.Generator().manual_seed(0))
    losers, = captured
    assert out.pair_rows.tolist() == [0, 2, 3]
    assert losers.image_index.tolist() == [0, 1, 2]
    assert not torch.allclose(losers.pixel_values, batch['pixel_values'])
    # the responses differ per row, so a misaligned row cannot match
    labels = batch['labels']
    assert out.num_tokens.tolist() == (labels[:, 1:] != -100).sum(1).tolist()
    ref_w, ref_l = [], []
    with torch.no_grad():
        for row in range(4):
            sl = slice(row, row + 1)
            img = batch['has_image'][row]
            idx = int(batch['has_image'][:row].sum())
            pics = [batch['pixel_values'][idx:idx + 1]] if img else [None]
            if img:
                pics.append(losers.pixel_values[idx:idx + 1])
            for pix, dst in zip(pics, (ref_w, ref_l)):
                logits = model(input_ids=batch['input_ids'][sl],
                               attention_mask=batch['attention_mask'][sl],
                               pixel_values=pix).logits
                dst.append(sequence_logps(logits, labels[sl])[0])
    ref_w, ref_l = torch.cat(ref_w), torch.cat(ref_l)
    torch.testing.assert_close(out.logp_winner.detach(), ref_w, atol=1e-4,
                               rtol=1e-4)
    torch.testing.assert_close(out.logp_loser.detach(), ref_l, atol=1e-4,
                               rtol=1e-4)
    assert not torch.allclose(ref_l, ref_l.flip(0), atol=1e-3)
    rows = out.pair_rows
    torch.testing.assert_close(out.lam, torch.full((3, ), 0.5))
    expected = mixed_simpo_loss(ref_w[rows], ref_l, out.num_tokens[rows],
                                out.lam)
    torch.testing.assert_close(out.simpo_loss.detach(), expected,
                               atol=1e-5, rtol=1e-5)
