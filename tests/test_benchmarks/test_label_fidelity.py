"""The label-fidelity harness measures what it claims (fast checks)."""
import os.path as osp
import sys

import numpy as np
import torch

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'benchmarks'))

import label_fidelity as lf  # noqa: E402

from mergemix_mm.models.batch_augments import (ResizeMixTau,  # noqa: E402
                                               SmoothMix)


def test_generated_masks_mark_the_object_pixels():
    images, labels, masks = lf.make_textured_objects(20, seed=3)
    assert images.shape == (20, 32, 32, 3) and images.dtype == np.uint8
    assert masks.shape == (20, 32, 32) and labels.min() >= 0
    for img, y, m in zip(images, labels, masks):
        assert 20 < m.sum() < 32 * 32 / 2
        colour = lf.PALETTE[y] * 255
        # object pixels carry the class colour (+-0.1 jitter), the rest not
        assert np.abs(img[m] - colour).max() <= 0.1 * 255 + 1
        assert np.abs(img[~m] - colour).max(-1).min() > 10


class _BlackBox:
    """Hides the plan API so the harness takes the mask-channel route."""

    def __init__(self, aug):
        self.aug = aug

    def __call__(self, x, y):
        return self.aug(x, y)


def _black_box(aug, name):
    # the harness recognises resizing augments by their class name
    return type(name, (_BlackBox, ), {})(aug)


def _visible(aug, x, y, obj, seed=0):
    lf._seed(seed)
    return lf.evaluate_method(aug, None, x, y, obj)


def test_black_box_route_matches_the_plan_route():
    images, labels, masks = lf.make_textured_objects(200, seed=1)
    idx = [int(np.flatnonzero(labels == c)[0]) for c in range(10)]
    x = lf._to_inputs(images[idx])
    y = torch.from_numpy(labels[idx])
    obj = torch.from_numpy(masks[idx])
    for aug, name in ((SmoothMix(), 'SmoothMixBox'),
                      (ResizeMixTau(interpolation='bilinear'),
                       'ResizeMixBox')):
        plan_route = _visible(aug, x, y, obj)
        box_route = _visible(_black_box(aug, name), x, y, obj)
        for a, b in zip(plan_route, box_route):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_truth_for_a_known_cut():
    """Own object fully covered -> all visible mass is the partner's."""
    obj = torch.zeros(2, 8, 8, dtype=torch.bool)
    obj[:, 2:4, 2:4] = True

    class Cover(ResizeMixTau):
        def build_mix(self, inputs, batch_score=None):
            mask = torch.ones(2, 1, 8, 8)
            mask[0, :, 2:4, 2:4] = 0  # sample 0 loses its object
            return dict(mask=mask, index=torch.tensor([1, 0]),
                        lam=torch.tensor([0.9, 1.0]))

        def apply_mix(self, own, partner, plan):
            m = plan['mask']
            return m * own + (1 - m) * partner

    x = torch.zeros(2, 3, 8, 8)
    lam, v_own, v_par = lf.evaluate_method(Cover(), None, x,
                                           torch.tensor([0, 1]), obj)
    torch.testing.assert_close(v_own, torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(v_par, torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(lam, torch.tensor([0.9, 1.0]))


def test_bad_method_is_reported_before_training(monkeypatch, tmp_path):
    import pytest

    def fail(args):
        pytest.fail('the fixed model was trained despite a bad --methods')

    monkeypatch.setattr(lf, 'fixed_model', fail)
    threads = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit, match='--methods.*nosuch'):
            lf.main(['--methods', 'nosuch', '--out', str(tmp_path),
                     '--threads', str(threads)])
    finally:
        torch.set_num_threads(threads)


def test_bad_counts_name_the_option(capsys):
    import pytest
    for argv in (['--batches', '0'], ['--train-epochs', '0'],
                 ['--train-images', '10']):
        with pytest.raises(SystemExit):
            lf.parse_args(argv)
        assert argv[0] in capsys.readouterr().err


def test_run_writes_its_table_and_wall_time(monkeypatch, tmp_path):
    """A whole run (content-agnostic methods only, so the fixed model is
    trained) writes the table and the wall time."""
    import json
    model = lf.common.build_model(lf.common.load_config('vanilla', 'digits'))
    monkeypatch.setattr(lf, 'fixed_model', lambda args: (None, model, 50.0))
    threads = torch.get_num_threads()
    try:
        lf.main(['--methods', 'mixup', 'cutmix', '--batches', '2',
                 '--out', str(tmp_path), '--name', 'lf',
                 '--threads', str(threads)])
    finally:
        torch.set_num_threads(threads)
    payload = json.loads((tmp_path / 'lf.json').read_text())
    assert set(payload['results']) == {'mixup', 'cutmix'}
    assert payload['results']['mixup']['mae'] < 1e-6  # blend = visible
    assert payload['results']['cutmix']['samples'] == 20
    assert payload['wall_time_s'] > 0
    md = (tmp_path / 'lf.md').read_text()
    assert 'Total wall time' in md
