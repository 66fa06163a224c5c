"""Validation of scalar settings, shared by every module: each error names
the owner and the setting (``'Owner: name=value must be ...'``)."""
import math
from numbers import Real
from typing import Optional, Union

import numpy as np

__all__ = ['Number', 'check_bool', 'check_number']

Number = Union[int, float]


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def check_number(owner: str,
                 name: str,
                 value,
                 low: Optional[float] = None,
                 high: Optional[float] = None,
                 low_open: bool = False,
                 high_open: bool = False,
                 integer: bool = False) -> Number:
    """Validate one numeric hyper-parameter.

    Args:
        owner (str): Augment name used in the message.
        name (str): Setting name used in the message.
        value: The value to check.
        low (float, optional): Lower bound. Defaults to None.
        high (float, optional): Upper bound. Defaults to None.
        low_open (bool): Exclude ``low``. Defaults to False.
        high_open (bool): Exclude ``high``. Defaults to False.
        integer (bool): Require an int. Defaults to False.

    Returns:
        int | float: The value (ints stay ints only when ``integer``).

    Raises:
        TypeError: If the value is not a number (or not an int).
        ValueError: If it lies outside the bounds.
    """
    if integer:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f'{owner}: {name}={value!r} must be an int.')
        value = int(value)
    elif not _is_number(value):
        raise TypeError(f'{owner}: {name}={value!r} must be a number.')
    else:
        value = float(value)
    if not math.isfinite(value):
        raise ValueError(f'{owner}: {name}={value!r} must be finite.')
    bad = False
    if low is not None:
        bad |= value <= low if low_open else value < low
    if high is not None:
        bad |= value >= high if high_open else value > high
    if bad:
        lo = '-inf' if low is None else low
        hi = 'inf' if high is None else high
        lb = '(' if low_open or low is None else '['
        hb = ')' if high_open or high is None else ']'
        raise ValueError(f'{owner}: {name}={value!r} must lie in '
                         f'{lb}{lo}, {hi}{hb}.')
    return value


def check_bool(owner: str, name: str, value) -> bool:
    """Validate a flag: only ``True`` / ``False`` (no ``'False'``, no 0/1).

    Args:
        owner (str): Component name used in the message.
        name (str): Setting name used in the message.
        value: The value to check.

    Returns:
        bool: The value.

    Raises:
        TypeError: If the value is not a bool.
    """
    if not isinstance(value, bool):
        raise TypeError(f'{owner}: {name}={value!r} must be a bool.')
    return value
