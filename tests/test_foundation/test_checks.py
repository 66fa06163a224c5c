"""mergemix_mm.utils.checks: the shared setting validators."""
import pytest

from mergemix_mm.utils import check_bool, check_number


@pytest.mark.parametrize('value', ['False', 0, 1, None, 1.0])
def test_check_bool_rejects_non_bools_naming_the_setting(value):
    with pytest.raises(TypeError, match=rf'Owner: flag={value!r} must be a '
                       r'bool\.'):
        check_bool('Owner', 'flag', value)


def test_check_bool_returns_bools():
    assert check_bool('Owner', 'flag', True) is True
    assert check_bool('Owner', 'flag', False) is False


def test_check_number_is_the_batch_augments_one():
    from mergemix_mm.models.batch_augments import mix_plan
    assert mix_plan.check_number is check_number
    with pytest.raises(TypeError, match="Owner: x=True must be a number"):
        check_number('Owner', 'x', True)
    with pytest.raises(ValueError, match=r'Owner: x=2.0 must lie in'):
        check_number('Owner', 'x', 2, high=1)


@pytest.mark.parametrize('value', [True, False, 1.0, '1', None])
def test_check_number_integer_rejects_bools_and_floats(value):
    with pytest.raises(TypeError, match=r'Owner: n=.* must be an int\.'):
        check_number('Owner', 'n', value, integer=True)


def test_check_number_integer_keeps_ints_as_ints():
    import numpy as np
    value = check_number('Owner', 'n', np.int64(3), integer=True)
    assert value == 3 and type(value) is int


@pytest.mark.parametrize('value', [float('nan'), float('inf'),
                                   float('-inf')])
def test_check_number_rejects_non_finite(value):
    with pytest.raises(ValueError, match='must be finite'):
        check_number('Owner', 'x', value)


def test_check_number_open_and_closed_bounds():
    assert check_number('Owner', 'x', 0, low=0) == 0.0
    assert check_number('Owner', 'x', 1, high=1) == 1.0
    with pytest.raises(ValueError,
                       match=r'Owner: x=0.0 must lie in \(0, inf\)\.'):
        check_number('Owner', 'x', 0, low=0, low_open=True)
    with pytest.raises(ValueError,
                       match=r'Owner: x=1.0 must lie in \[0, 1\)\.'):
        check_number('Owner', 'x', 1, low=0, high=1, high_open=True)
    with pytest.raises(ValueError,
                       match=r'Owner: x=-1.0 must lie in \[0, 1\]\.'):
        check_number('Owner', 'x', -1, low=0, high=1)
