"""Random patch occlusion: exact counts, patch alignment, determinism, and
0 % occlusion = plain accuracy."""
import pytest
import torch
from mmpretrain.registry import MODELS

from mergemix_mm.analysis import (build_loader, build_model, load_config,
                                  occlude_patches, occlusion_curve,
                                  occlusion_patch_size, random_patch_mask)


@pytest.mark.parametrize('fraction, expected', [(0.0, 0), (0.1, 2), (0.5, 8),
                                                (1.0, 16)])
def test_mask_has_exact_count_per_image(fraction, expected):
    mask = random_patch_mask(5, (4, 4), fraction,
                             torch.Generator().manual_seed(0))
    assert mask.shape == (5, 4, 4) and mask.dtype == torch.bool
    assert mask.flatten(1).sum(1).tolist() == [expected] * 5


def test_masks_differ_between_images_and_repeat_with_seed():
    a = random_patch_mask(8, (8, 8), 0.5, torch.Generator().manual_seed(3))
    b = random_patch_mask(8, (8, 8), 0.5, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    assert len({tuple(m.flatten().tolist()) for m in a}) == 8


def test_occlusion_fills_whole_patches_only():
    x = torch.randn(3, 3, 32, 32) + 5  # no pixel is 0 by chance
    original = x.clone()
    out = occlude_patches(x, 0.25, 8, torch.Generator().manual_seed(1))
    assert not torch.equal(out, x)
    assert torch.equal(x, original)  # a new tensor; the input is untouched
    cells = out.reshape(3, 3, 4, 8, 4, 8)
    filled = (cells == 0).all(dim=(1, 3, 5))
    kept = (cells == x.reshape(3, 3, 4, 8, 4, 8)).all(dim=(1, 3, 5))
    assert bool((filled ^ kept).all())  # every patch is all-fill or intact
    assert filled.flatten(1).sum(1).tolist() == [4, 4, 4]


def test_fractions_zero_and_one_and_fill_value():
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(occlude_patches(x, 0.0, 4), x)
    torch.testing.assert_close(occlude_patches(x, 1.0, 4, fill=-1.5),
                               torch.full_like(x, -1.5))


def test_non_divisible_size_covers_border_cells():
    x = torch.ones(1, 1, 10, 10)
    out = occlude_patches(x, 1.0, 4)  # 3 x 3 cells, the last ones cut
    assert torch.equal(out, torch.zeros_like(x))


@pytest.mark.parametrize('bad', [-0.1, 1.5, True])
def test_bad_fraction_raises(bad):
    with pytest.raises(ValueError, match='fraction'):
        random_patch_mask(2, (2, 2), bad)


def test_patch_size_from_vit_and_required_for_cnn(tiny_vit_cfg):
    vit = MODELS.build(tiny_vit_cfg)
    assert occlusion_patch_size(vit) == (8, 8)
    assert occlusion_patch_size(vit, 4) == (4, 4)
    cnn = MODELS.build(dict(type='ResNet', depth=18))
    with pytest.raises(ValueError, match='--patch-size'):
        occlusion_patch_size(cnn)
    assert occlusion_patch_size(cnn, (7, 7)) == (7, 7)
    with pytest.raises(ValueError, match='patch_size'):
        occlusion_patch_size(cnn, 0)


def test_zero_occlusion_equals_plain_accuracy(tiny_config, tiny_checkpoint):
    cfg = load_config(tiny_config)
    model = build_model(cfg, tiny_checkpoint)
    loader = build_loader(cfg, 'test', batch_size=150)
    # plain accuracy of the first batch through mmengine's test-time path
    preds = model.val_step(next(iter(loader)))
    plain = 100.0 * sum(
        int(p.pred_label.item() == p.gt_label.item()) for p in preds) / 150
    curve = occlusion_curve(model,
                            loader, [0.0, 0.5, 1.0],
                            seed=0,
                            max_batches=1,
                            progress=False)
    assert curve['num_samples'] == 150
    assert curve['patch_size'] == [8, 8]
    assert curve['top1'][0] == pytest.approx(plain, abs=1e-9)
    # fully occluded: every image is the same constant -> a single class
    # is predicted, so top-1 is that class's share of the batch
    labels = torch.cat([p.gt_label for p in preds])
    shares = torch.bincount(labels, minlength=10).float() / 150 * 100
    assert any(curve['top1'][2] == pytest.approx(float(s)) for s in shares)
    again = occlusion_curve(model,
                            loader, [0.0, 0.5, 1.0],
                            seed=0,
                            max_batches=1,
                            progress=False)
    assert again['top1'] == curve['top1']


@pytest.mark.parametrize('grid, fraction, expected', [((3, 3), 0.5, 5),
                                                      ((1, 5), 0.5, 3),
                                                      ((1, 2), 0.25, 1)])
def test_mask_count_rounds_half_up(grid, fraction, expected):
    # round(f * N) rounds halves up (4.5 -> 5, 2.5 -> 3, 0.5 -> 1), not to
    # the even neighbour as Python's round() would
    mask = random_patch_mask(4, grid, fraction,
                             torch.Generator().manual_seed(0))
    assert mask.flatten(1).sum(1).tolist() == [expected] * 4


def test_non_square_patches_tile_rows_by_height():
    x = torch.randn(2, 3, 8, 16) + 5
    out = occlude_patches(x, 0.5, (2, 8), torch.Generator().manual_seed(0))
    # 4 x 2 cells of 2 x 8 pixels
    cells = out.reshape(2, 3, 4, 2, 2, 8)
    filled = (cells == 0).all(dim=(1, 3, 5))
    kept = (cells == x.reshape(2, 3, 4, 2, 2, 8)).all(dim=(1, 3, 5))
    assert bool((filled ^ kept).all())
    assert filled.flatten(1).sum(1).tolist() == [4, 4]


def _spy_occlusions(monkeypatch):
    import importlib
    occ = importlib.import_module('mergemix_mm.analysis.occlusion')
    seen = []
    original = occ.occlude_patches

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.append(out.clone())
        return out

    monkeypatch.setattr(occ, 'occlude_patches', spy)
    return seen


def test_occlusion_curve_masks_follow_the_seed(tiny_config, tiny_checkpoint,
                                               monkeypatch):
    cfg = load_config(tiny_config)
    model = build_model(cfg, tiny_checkpoint)
    loader = build_loader(cfg, 'test', batch_size=8)
    runs = {}
    for seed in (0, 1, 0):
        seen = _spy_occlusions(monkeypatch)
        occlusion_curve(model,
                        loader, [0.5],
                        seed=seed,
                        max_batches=1,
                        progress=False)
        assert len(seen) == 1
        runs.setdefault(seed, []).append(seen[0])
    torch.testing.assert_close(runs[0][0], runs[0][1])
    assert not torch.equal(runs[0][0], runs[1][0])


def test_occlusion_curve_counts_every_batch(tiny_config, tiny_checkpoint):
    cfg = load_config(tiny_config)
    model = build_model(cfg, tiny_checkpoint)
    one = occlusion_curve(model,
                          build_loader(cfg, 'test', batch_size=60), [0.0],
                          max_batches=1,
                          progress=False)
    two = occlusion_curve(model,
                          build_loader(cfg, 'test', batch_size=30), [0.0],
                          max_batches=2,
                          progress=False)
    assert one['num_samples'] == two['num_samples'] == 60
    assert two['top1'] == pytest.approx(one['top1'], abs=1e-9)
