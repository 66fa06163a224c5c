"""ECE / reliability bins against hand-computed values."""
import json
import math

import numpy as np
import pytest
import torch
from analysis_utils import assert_png

from mergemix_mm.analysis import (calibration_bins, calibration_from_scores,
                                  expected_calibration_error, plot_reliability)


def test_ece_of_a_hand_built_prediction_set():
    # 15 bins of width 1/15: 0.05 -> bin 0, 0.30 -> bin 4, 0.55 / 0.58 ->
    # bin 8 (8/15 = 0.5333 < c <= 0.6), 0.95 / 0.97 / 0.99 -> bin 14.
    conf = [0.05, 0.30, 0.55, 0.58, 0.95, 0.97, 0.99, 0.30]
    correct = [0, 1, 1, 0, 1, 1, 0, 0]
    # bin 0: n=1, acc 0,   conf 0.05          -> |0 - 0.05|   = 0.05
    # bin 4: n=2, acc 0.5, conf 0.30          -> |0.5 - 0.30| = 0.20
    # bin 8: n=2, acc 0.5, conf 0.565         -> 0.065
    # bin 14: n=3, acc 2/3, conf 0.97         -> 0.97 - 2/3
    expected = (1 * 0.05 + 2 * 0.20 + 2 * 0.065 + 3 * (0.97 - 2 / 3)) / 8
    res = calibration_bins(conf, correct, num_bins=15)
    assert res.ece == pytest.approx(expected, abs=1e-12)
    assert expected_calibration_error(conf,
                                      correct) == pytest.approx(expected,
                                                                abs=1e-12)
    assert res.mce == pytest.approx(0.97 - 2 / 3, abs=1e-12)
    assert res.accuracy == pytest.approx(4 / 8)
    assert res.mean_confidence == pytest.approx(np.mean(conf))
    counts = {i: b.count for i, b in enumerate(res.bins) if b.count}
    assert counts == {0: 1, 4: 2, 8: 2, 14: 3}
    assert res.bins[8].confidence == pytest.approx(0.565)
    assert sum(b.count for b in res.bins) == len(conf)
    assert len(res.bins) == 15
    assert res.bins[0].lower == 0 and res.bins[-1].upper == 1


def test_bins_are_left_open_right_closed():
    # 5 bins of width 0.2: 0.2 closes bin 0; 0 and 1 go to the end bins
    res = calibration_bins([0.0, 0.2, 1.0], [1, 1, 1], num_bins=5)
    assert [b.count for b in res.bins] == [2, 0, 0, 0, 1]
    res = calibration_bins([0.2 + 1e-9], [1], num_bins=5)
    assert [b.count for b in res.bins] == [0, 1, 0, 0, 0]


def test_perfectly_calibrated_and_confidently_wrong():
    # every bin's accuracy equals its confidence -> ECE 0
    conf = [0.25] * 4 + [0.75] * 4
    correct = [1, 0, 0, 0] + [1, 1, 1, 0]
    assert expected_calibration_error(conf, correct, 10) == pytest.approx(0)
    # all wrong at confidence 0.9 -> ECE 0.9
    assert expected_calibration_error([0.9] * 5, [0] * 5) == \
        pytest.approx(0.9)


def test_calibration_from_scores_uses_max_softmax():
    scores = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6],
                           [0.5, 0.4, 0.1]])
    labels = torch.tensor([0, 2, 2, 1])
    res = calibration_from_scores(scores, labels, num_bins=15)
    direct = calibration_bins([0.7, 0.6, 0.6, 0.5], [1, 0, 1, 0], 15)
    assert res.ece == pytest.approx(direct.ece)
    assert res.accuracy == pytest.approx(0.5)
    json.dumps(res.to_dict())  # serialisable


@pytest.mark.parametrize('conf, correct, bins, match', [
    ([], [], 15, 'empty'),
    ([0.5, 0.6], [1], 15, 'same length'),
    ([1.2], [1], 15, r'\[0, 1\]'),
    ([0.5], [2], 15, '0/1'),
    ([math.nan], [1], 15, 'NaN'),
    ([0.5], [1], 0, 'num_bins'),
])
def test_bad_inputs_raise(conf, correct, bins, match):
    with pytest.raises(ValueError, match=match):
        calibration_bins(conf, correct, num_bins=bins)


def test_reliability_png_is_written(tmp_path):
    rng = np.random.RandomState(0)
    conf = rng.uniform(0.1, 1.0, 300)
    correct = (rng.uniform(size=300) < conf).astype(float)
    a = calibration_bins(conf, correct)
    b = calibration_bins(conf, np.ones(300))
    path = str(tmp_path / 'rel.png')
    plot_reliability([('A', a), ('B', b)], path)
    assert_png(path)
