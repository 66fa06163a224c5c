"""Qwen2.5-VL: attention-only mask, patch layout, pairs and log-probs."""
import numpy as np
import pytest
import torch
from PIL import Image

from mergemix_mm.mllm import (ConversationCollator, MergeMixArguments,
                              MergeMixVLM, qwen_patchify, qwen_unpatchify,
                              qwen_vision_saliency, sequence_logps)
from mergemix_mm.mllm.tome_qwen import qwen_window_index


def _samples(sizes, seed=0):
    rng = np.random.RandomState(seed)
    out = []
    for i, (h, w) in enumerate(sizes):
        img = Image.fromarray((rng.rand(h, w, 3) * 255).astype('uint8'))
        out.append(dict(id=f'q{i}', image=img, conversation=[
            ('user', '<image>\nWhich digit is shown?'),
            ('assistant', ['one', 'two', 'seven'][i % 3])]))
    return out


def _batch(processor, tok, samples):
    return ConversationCollator(tok, processor, template='qwen2_5_vl')(
        samples)


def test_tome_in_qwen_tower_is_refused(tiny_qwen):
    model = tiny_qwen[0]
    with pytest.raises(ValueError, match='merge_num=8: token merging inside '
                       'the Qwen2.5-VL vision tower is not sound'):
        MergeMixVLM(model, MergeMixArguments(merge_num=8))


def test_patch_layout_round_trip(tiny_qwen):
    _, processor, _ = tiny_qwen
    img = Image.fromarray(
        (np.random.RandomState(0).rand(32, 48, 3) * 255).astype('uint8'))
    out = processor(images=[img], return_tensors='pt')
    grid = out['image_grid_thw'][0].tolist()
    image = qwen_unpatchify(out['pixel_values'], grid, 4, 2, 2)
    assert image.shape == (3, 32, 48)
    assert torch.equal(qwen_patchify(image, 4, 2, 2), out['pixel_values'])


def test_saliency_is_in_llm_token_order(tiny_qwen):
    """Scores are per LLM token (2x2 unit) in the order of the image tokens:
    the window permutation we undo is the one the tower itself undoes."""
    model, processor, _ = tiny_qwen
    visual = model.model.visual.eval()
    imgs = [s['image'] for s in _samples([(32, 48), (40, 40)])]
    out = processor(images=imgs, return_tensors='pt')
    sal = qwen_vision_saliency(visual, out['pixel_values'],
                               out['image_grid_thw'])
    assert [s.numel() for s in sal] == [24, 25]
    assert all(torch.allclose(s.sum(), torch.tensor(1.)) for s in sal)
    captured = {}
    handle = visual.merger.register_forward_hook(
        lambda m, a, o: captured.setdefault('window_order', o))
    with torch.no_grad():
        final = visual(out['pixel_values'], grid_thw=out['image_grid_thw'])
    handle.remove()
    wi = qwen_window_index(visual, out['image_grid_thw'])
    assert torch.equal(captured['window_order'][torch.argsort(wi)],
                       final.pooler_output)
    with pytest.raises(ValueError, match='window-attention block'):
        qwen_vision_saliency(visual, out['pixel_values'],
                             out['image_grid_thw'], block_index=0)


def test_qwen_logps_match_hf_loss(tiny_qwen):
    model, processor, tok = tiny_qwen
    wrapper = MergeMixVLM(model, MergeMixArguments(method='sft')).eval()
    batch = _batch(processor, tok, _samples([(32, 32), (32, 48)]))
    with torch.no_grad():
        ref = model(input_ids=batch['input_ids'],
                    attention_mask=batch['attention_mask'],
                    pixel_values=batch['pixel_values'],
                    image_grid_thw=batch['image_grid_thw'],
                    mm_token_type_ids=batch['mm_token_type_ids'],
                    labels=batch['labels'])
        out = wrapper(**batch)
    logp, n = sequence_logps(ref.logits, batch['labels'])
    assert torch.allclose(out.logp_winner, logp, atol=1e-4)
    assert torch.allclose(out.sft_loss, ref.loss, atol=1e-5)


def test_qwen_pairs_same_size_and_keep_k_units(tiny_qwen):
    model, processor, tok = tiny_qwen
    wrapper = MergeMixVLM(model, MergeMixArguments()).train()
    # two 32x32 images pair up; the 32x48 image has no same-size partner
    batch = _batch(processor, tok,
                   _samples([(32, 32), (32, 48), (32, 32)]))
    captured = {}
    orig = wrapper.adapter.build_losers

    def spy(*args, **kwargs):
        captured['losers'] = orig(*args, **kwargs)
        return captured['losers']

    wrapper.adapter.build_losers = spy
    out = wrapper(**batch, lam=0.5)
    out.loss.backward()
    assert out.pair_rows.tolist() == [0, 2]
    assert out.logp_loser.requires_grad
    losers = captured['losers']
    rows = torch.split(batch['pixel_values'],
                       batch['image_grid_thw'].prod(-1).tolist())
    loser_rows = torch.split(losers.pixel_values, [64, 64])
    for j, (i, p) in enumerate([(0, 2), (2, 0)]):
        units = loser_rows[j].reshape(16, -1)
        own = (units == rows[i].reshape(16, -1)).all(1)
        other = (units == rows[p].reshape(16, -1)).all(1)
        assert int(own.sum()) == 8  # floor(0.5 * 16) units kept
        assert (own | other).all()
    assert torch.allclose(out.lam, torch.full((2, ), 0.5))
    assert model.model.visual.patch_embed.proj.weight.grad is not None


def test_qwen_accepts_compat_llava(tiny_qwen):
    """``compat='llava'`` sets ``topk_space='merged'``; the Qwen tower never
    merges, so that space is its units and the official-code settings (here
    the no-grad loser) apply on Qwen too."""
    model, processor, tok = tiny_qwen
    wrapper = MergeMixVLM(model, MergeMixArguments(compat='llava')).train()
    assert wrapper.mm_args.topk_space == 'merged'
    batch = _batch(processor, tok, _samples([(32, 32), (32, 32)]))
    out = wrapper(**batch, lam=0.5)
    assert out.pair_rows.numel() == 2
    assert not out.logp_loser.requires_grad  # compat: loser under no_grad
    assert torch.isfinite(out.loss)


def test_merged_topk_without_merging_is_the_plain_topk():
    """With an identity source map (nothing merged) the official
    merged-token top-k keeps exactly the plain top-k patches: what lets the
    Qwen adapter serve ``topk_space='merged'`` with the unit top-k."""
    from mergemix_mm.mllm.mask import merged_topk_keep_mask, topk_keep_mask
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(3, 17, generator=g)  # CLS + 16 patches
    source = torch.arange(17).expand(3, -1)
    for lam in (0., 0.3, 0.5, 1.):
        assert torch.equal(
            merged_topk_keep_mask(scores, source, lam),
            topk_keep_mask(scores[:, 1:], lam))
