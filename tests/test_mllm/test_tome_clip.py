"""ToMe inside the HF CLIP vision tower of LLaVA."""
import pytest
import torch

from mergemix_mm.mllm import clip_merge_schedule, clip_tome_forward


@pytest.fixture
def tower(tiny_llava):
    model = tiny_llava[0]
    return model.model.vision_tower.eval()


def test_no_merge_equals_stock_hidden_states(tower):
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = tower(x, output_hidden_states=True).hidden_states
        for layer in (-2, -1, 1):
            out = clip_tome_forward(tower, x, 0, feature_layer=layer)
            assert torch.allclose(out.hidden_states, ref[layer], atol=1e-5)


@pytest.mark.parametrize('merge_num', [1, 16, 32, 40])
def test_budget_is_exact_and_cls_protected(tower, merge_num):
    x = torch.randn(3, 3, 32, 32)
    out = clip_tome_forward(tower, x, merge_num, need_attn=True)
    assert out.hidden_states.shape == (3, 1 + 64 - merge_num, 32)
    assert out.token_counts[-1] == 65 - merge_num
    assert (out.source[:, 0] == 0).all()
    assert (out.source[:, 1:] != 0).all()
    assert (out.source < out.hidden_states.shape[1]).all()
    # sizes add up to all 65 original tokens; CLS keeps size 1
    assert torch.allclose(out.size.sum(1).squeeze(-1), torch.full((3, ), 65.))
    assert (out.size[:, 0] == 1).all()
    # the mask attention lives in the space of the tokens entering attn_layer
    assert out.cls_attn.shape[1] == out.token_counts[-2]
    assert torch.allclose(out.cls_attn.sum(1), torch.ones(3), atol=1e-5)
    assert torch.equal(out.patch_scores,
                       out.cls_attn.gather(1, out.attn_source[:, 1:]))


def test_attn_layer_and_size_errors(tower):
    with pytest.raises(ValueError, match='attn_layer=2 is out of range'):
        clip_tome_forward(tower, torch.randn(1, 3, 32, 32), attn_layer=2,
                          need_attn=True)
    with pytest.raises(ValueError, match='image_size=32'):
        clip_tome_forward(tower, torch.randn(1, 3, 48, 48))
    with pytest.raises(ValueError, match='merge_num=64'):
        clip_merge_schedule(64, 2, 64)


def test_merge_is_per_sample(tower):
    """The metric is per sample: a sample's merge does not depend on the
    other samples of the batch (the official LLaVA code shares one merge
    pattern across the batch)."""
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        full = clip_tome_forward(tower, x, 24)
        single = clip_tome_forward(tower, x[2:3], 24)
    assert torch.equal(full.source[2:3], single.source)
    assert torch.allclose(full.hidden_states[2:3], single.hidden_states,
                          atol=1e-5)
