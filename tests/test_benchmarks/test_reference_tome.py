"""The reference-ToMe yardstick imports the official package only when it
is installed, and patches a copy of the benchmarked timm model.

The reference (facebookresearch/ToMe) is CC-BY-NC and not installed in CI;
these tests check the plumbing with a stand-in ``tome`` package that keeps
the reference's contract: ``apply_patch(model, trace_source, prop_attn)``
swaps the model's class in place, and the patched model consumes the list
in ``model.r`` during its forward.
"""
import os.path as osp
import sys
import types

import pytest
import torch

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'benchmarks'))

import reference_tome  # noqa: E402


def _timm_vit():
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    return VisionTransformer(
        img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2,
        num_classes=7).eval()


@pytest.fixture
def stand_in_reference(monkeypatch):
    """A ``tome.patch.timm`` module with the reference's contract; records
    the schedules its forwards consumed."""
    consumed = []

    def apply_patch(model, trace_source=False, prop_attn=True):
        base = model.__class__

        class Patched(base):

            def forward(self, x):
                r = self.r
                assert isinstance(r, list) and len(r) == len(self.blocks)
                consumed.append(list(r))
                r.clear()  # the reference pops its schedule
                return super().forward(x)

        model.__class__ = Patched
        model.r = 0
        model.patch_args = (trace_source, prop_attn)

    timm_mod = types.ModuleType('tome.patch.timm')
    timm_mod.apply_patch = apply_patch
    patch_mod = types.ModuleType('tome.patch')
    patch_mod.timm = timm_mod
    tome = types.ModuleType('tome')
    tome.patch = patch_mod
    tome.__file__ = '/opt/ToMe/tome/__init__.py'
    for name, mod in (('tome', tome), ('tome.patch', patch_mod),
                      ('tome.patch.timm', timm_mod)):
        monkeypatch.setitem(sys.modules, name, mod)
    return consumed


def test_missing_reference_names_the_option_and_the_source(monkeypatch):
    monkeypatch.setitem(sys.modules, 'tome', None)
    with pytest.raises(ImportError, match='--reference.*facebookresearch'):
        reference_tome.load_reference()
    with pytest.raises(ImportError, match='--reference'):
        reference_tome.reference_forward_fn(_timm_vit(), [0, 0, 0])
    with pytest.raises(ImportError, match='--reference'):
        reference_tome.reference_location()


def test_location_is_the_imported_package(stand_in_reference):
    assert reference_tome.reference_location() == '/opt/ToMe/tome'


def test_patches_a_copy_and_returns_the_stock_features(stand_in_reference):
    model = _timm_vit()
    stock_class = type(model)
    fn = reference_tome.reference_forward_fn(model, [2, 1, 0])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out1, = fn(x)
        out2, = fn(x)
        stock = model.forward_head(model.forward_features(x), pre_logits=True)
    # the benchmarked model is untouched: same class, classifier kept
    assert type(model) is stock_class and model.head.out_features == 7
    assert not hasattr(model, 'patch_args')
    # a fresh schedule every call (the reference consumes it)
    assert stand_in_reference == [[2, 1, 0], [2, 1, 0]]
    # pre-logits features, as the stock forward it is compared with
    assert out1.shape == stock.shape == (2, 32)
    torch.testing.assert_close(out1, stock)
    torch.testing.assert_close(out2, stock)


def test_proportional_attention_is_off_by_default(stand_in_reference):
    seen = {}
    real = sys.modules['tome.patch.timm'].apply_patch

    def spy(model, trace_source=False, prop_attn=True):
        seen.update(trace_source=trace_source, prop_attn=prop_attn)
        real(model, trace_source, prop_attn)

    sys.modules['tome.patch.timm'].apply_patch = spy
    reference_tome.reference_forward_fn(_timm_vit(), [0, 0, 0])
    assert seen == dict(trace_source=False, prop_attn=False)
    reference_tome.reference_forward_fn(_timm_vit(), [0, 0, 0],
                                        prop_attn=True)
    assert seen['prop_attn'] is True


def test_schedule_length_must_match_the_blocks(stand_in_reference):
    with pytest.raises(ValueError, match='r_list has 2 entries.*3 blocks'):
        reference_tome.reference_forward_fn(_timm_vit(), [1, 1])


def test_max_difference_reports_agreement_and_disagreement(
        stand_in_reference):
    model = _timm_vit()
    x = torch.randn(2, 3, 32, 32)
    same = reference_tome.reference_forward_fn(model, [0, 0, 0])
    assert reference_tome.max_difference(model, [0, 0, 0], x, same) < 1e-5
    # the stand-in does not merge, this library does: a real difference
    merged = reference_tome.reference_forward_fn(model, [2, 1, 0])
    assert reference_tome.max_difference(model, [2, 1, 0], x, merged) > 1e-3
