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
