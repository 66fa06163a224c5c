"""Log-prob alignment and the mixed SimPO loss."""
import math

import pytest
import torch

from mergemix_mm.mllm import (MergeMixArguments, MergeMixVLM,
                              mixed_simpo_loss, response_logps,
                              sequence_logps, sft_loss_from_logps)


def test_sequence_logps_matches_hf_causal_loss():
    from transformers.loss.loss_utils import ForCausalLMLoss
    torch.manual_seed(0)
    logits = torch.randn(3, 9, 17)
    labels = torch.randint(0, 17, (3, 9))
    labels[:, :4] = -100
    labels[1, 6:] = -100
    logp, n = sequence_logps(logits, labels)
    hf = ForCausalLMLoss(logits, labels, vocab_size=17)
    assert n.tolist() == [5, 2, 5]
    assert torch.allclose(-logp.sum() / n.sum(), hf, atol=1e-6)
    # every scored token uses the logit one position earlier (next-token)
    manual = torch.log_softmax(logits[1, 4], -1)[labels[1, 5]] + \
        torch.log_softmax(logits[1, 3], -1)[labels[1, 4]]
    assert torch.allclose(logp[1], manual, atol=1e-6)


def test_response_logps_equals_full_logits():
    torch.manual_seed(1)
    head = torch.nn.Linear(8, 13, bias=False)
    hidden = torch.randn(2, 7, 8)
    labels = torch.randint(0, 13, (2, 7))
    labels[0, :3] = -100
    a, na = response_logps(hidden, labels, head)
    b, nb = sequence_logps(head(hidden), labels)
    assert torch.equal(na, nb)
    assert torch.allclose(a, b, atol=1e-6)


def test_per_token_logp_equals_hf_llava_loss(tiny_llava, make_samples,
                                             make_llava_batch):
    """The wrapper's log-probs (own ToMe-free tower, hidden states + head)
    give exactly the loss HF LLaVA computes for the same labels."""
    model, processor, tok = tiny_llava
    wrapper = MergeMixVLM(model, MergeMixArguments(method='sft'))
    batch = make_llava_batch(wrapper, processor, tok,
                             make_samples(4, with_text_only=True))
    model.eval()
    wrapper.eval()
    with torch.no_grad():
        ref = model(input_ids=batch['input_ids'],
                    attention_mask=batch['attention_mask'],
                    pixel_values=batch['pixel_values'],
                    labels=batch['labels'])
        logp_ref, n_ref = sequence_logps(ref.logits, batch['labels'])
        out = wrapper(**batch)
    assert torch.allclose(out.logp_winner, logp_ref, atol=1e-4)
    assert torch.equal(out.num_tokens, n_ref)
    assert torch.allclose(out.sft_loss, ref.loss, atol=1e-5)
    assert torch.allclose(sft_loss_from_logps(logp_ref, n_ref), ref.loss,
                          atol=1e-5)


def test_mixed_simpo_matches_hand_computation():
    logp_w = torch.tensor([-3.0, -10.0, -1.5])
    logp_l = torch.tensor([-6.0, -9.0, -4.5])
    n = torch.tensor([3, 5, 1])
    lam = torch.tensor([0.25, 0.5, 1.0])
    beta = 2.0
    expected = []
    for w, l, k, la in zip(logp_w.tolist(), logp_l.tolist(), n.tolist(),
                           lam.tolist()):
        z = beta / k * w - beta / k * l - (1 - la)
        expected.append(-math.log(1 / (1 + math.exp(-z))))
    got = mixed_simpo_loss(logp_w, logp_l, n, lam, beta=beta,
                           reduction='none')
    assert torch.allclose(got, torch.tensor(expected), atol=1e-6)
    mean = mixed_simpo_loss(logp_w, logp_l, n, lam, beta=beta)
    assert mean.item() == pytest.approx(sum(expected) / 3, abs=1e-6)
    # a scalar lam broadcasts; padded-length override changes the value
    s = mixed_simpo_loss(logp_w, logp_l, n, 0.5, length=torch.full_like(n, 9))
    z = (logp_w - logp_l) / 9 - 0.5
    assert torch.allclose(s, torch.nn.functional.softplus(-z).mean())


@pytest.mark.parametrize('beta', [0.0, -1.0])
def test_beta_must_be_positive(beta):
    with pytest.raises(ValueError, match='beta'):
        mixed_simpo_loss(torch.zeros(1), torch.zeros(1), torch.ones(1), 0.5,
                         beta=beta)
    with pytest.raises(ValueError, match='beta'):
        MergeMixArguments(beta=beta)


def test_empty_response_is_an_error():
    with pytest.raises(ValueError, match='response token'):
        mixed_simpo_loss(torch.zeros(2), torch.zeros(2), torch.tensor([3, 0]),
                         0.5)


def test_sft_loss_is_the_token_mean_over_unequal_responses():
    """Responses of unequal length: the SFT loss is the mean over all
    response tokens of the batch (HF ``ForCausalLMLoss``), not the mean of
    the per-sequence means."""
    from transformers.loss.loss_utils import ForCausalLMLoss
    torch.manual_seed(2)
    logits = torch.randn(3, 9, 17)
    labels = torch.randint(0, 17, (3, 9))
    labels[:, :4] = -100
    labels[1, 6:] = -100
    logp, n = sequence_logps(logits, labels)
    assert n.tolist() == [5, 2, 5]
    loss = sft_loss_from_logps(logp, n)
    hf = ForCausalLMLoss(logits, labels, vocab_size=17)
    torch.testing.assert_close(loss, hf, atol=1e-6, rtol=1e-6)
    # by hand: -(sum of the 12 token log-probs) / 12
    logp_sum = torch.tensor([-10.0, -1.0, -4.0])
    n_tok = torch.tensor([5, 2, 5])
    got = sft_loss_from_logps(logp_sum, n_tok)
    assert got.item() == pytest.approx(15.0 / 12, abs=1e-6)
    assert got.item() != pytest.approx(
        (10.0 / 5 + 1.0 / 2 + 4.0 / 5) / 3, abs=1e-3)
    # no labelled token: zero, still with a graph
    w = torch.zeros(2, requires_grad=True)
    zero = sft_loss_from_logps(w, torch.zeros(2, dtype=torch.long))
    assert zero.item() == 0.0 and zero.requires_grad
