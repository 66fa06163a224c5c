"""Tests for r-schedule parsing and validation."""
import pytest

from mergemix_mm.models.tome import (check_schedule, openmixup_raw_schedule,
                                     parse_r, resolve_schedule,
                                     schedule_from_merge_num)


@pytest.mark.parametrize('layers,merge_num,expected', [
    (12, 98, [8, 12, 11, 10, 10, 9, 8, 7, 7, 6, 5, 5]),
    (12, 49, [12, 5, 5, 4, 4, 4, 3, 3, 3, 2, 2, 2]),
    (12, 147, [15, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7]),
    (8, 98, [16, 17, 15, 13, 12, 10, 8, 7]),
])
def test_official_schedules(layers, merge_num, expected):
    assert schedule_from_merge_num(layers, merge_num) == expected
    assert schedule_from_merge_num(
        layers, merge_num, compat='openmixup') == expected
    assert openmixup_raw_schedule(layers, merge_num) == expected


def test_token_counts_of_official_schedule():
    counts = check_schedule(schedule_from_merge_num(12, 98), 197, 1)
    assert counts[8] == 122 and counts[11] == 104 and counts[-1] == 99
    counts = check_schedule(schedule_from_merge_num(12, 49), 197, 1)
    assert counts[11] == 150 and counts[-1] == 148


def test_negative_entry_redistribution():
    raw = openmixup_raw_schedule(24, 98)
    assert raw[0] == -4 and sum(raw) == 98
    compat = schedule_from_merge_num(24, 98, compat='openmixup')
    assert compat[0] == 0 and compat[1:] == raw[1:] and sum(compat) == 102
    default = schedule_from_merge_num(24, 98)
    assert sum(default) == 98 and min(default) >= 0 and default[0] == 0
    # the decreasing shape is kept after block 0
    assert all(a >= b for a, b in zip(default[1:], default[2:]))


def test_parse_r_forms():
    assert parse_r(4, 3) == [3, 3, 3, 3]
    assert parse_r(5, [4, 2]) == [4, 2, 0, 0, 0]
    # ToMe's decreasing schedule: (r, -1) goes from 2r down to 0
    assert parse_r(5, (4, -1.0)) == [8, 6, 4, 2, 0]
    assert parse_r(3, (4, 0.0)) == [4, 4, 4]
    assert parse_r(12, (9, -0.5), total=98)[0] == 8
    assert schedule_from_merge_num(12, 0) == [0] * 12


@pytest.mark.parametrize('bad', [-1, [1, -2], (3, 2.0), [1] * 5, 2.5])
def test_parse_r_rejects(bad):
    with pytest.raises(ValueError, match='tome_r|num_layers'):
        parse_r(4, bad)


def test_check_schedule_errors_name_setting():
    with pytest.raises(ValueError, match='merge_num=300'):
        schedule_from_merge_num(12, 300, num_tokens=197)
    with pytest.raises(ValueError, match=r'tome_r.*block 1'):
        check_schedule([10, 95], 197, 1, setting='tome_r')
    with pytest.raises(ValueError, match='negative'):
        check_schedule([1, -1], 197, 1)
    with pytest.raises(ValueError, match='merge_num'):
        schedule_from_merge_num(12, -3)


def test_resolve_schedule():
    assert resolve_schedule(
        12, merge_num=49) == schedule_from_merge_num(12, 49)
    assert resolve_schedule(4, tome_r=2) == [2, 2, 2, 2]
    assert resolve_schedule(4) == [0, 0, 0, 0]
    with pytest.raises(ValueError, match='mutually exclusive'):
        resolve_schedule(4, merge_num=8, tome_r=2)
    with pytest.raises(ValueError, match='schedule_compat'):
        schedule_from_merge_num(12, 98, compat='bogus')
