"""Per-block merge schedules (``r`` per block) for token merging.

Three ways to describe a schedule (``ALGORITHM.md`` §3.4, §10 A8):

* ToMe's ``r``: an int (constant ``r`` per block), a pair ``(r, inflect)``
  (linear schedule from ``int(r * (1 - inflect))`` down/up to
  ``2 r - int(r * (1 - inflect))``), or an explicit list (padded with zeros).
* MergeMix's ``merge_num``: a total number of merged tokens, spread over the
  blocks on a decreasing schedule. The integer ``r`` whose raw schedule sum is
  closest to ``merge_num`` is searched, and the remainder is added to the first
  block (``inflect < 0``) or the last block (``inflect >= 0``), as OpenMixup
  does. For 12 blocks and ``merge_num=98`` this gives
  ``[8, 12, 11, 10, 10, 9, 8, 7, 7, 6, 5, 5]``.
* When the remainder drives the first block negative (24 blocks, 98 tokens:
  ``-4``), the default clamps it to 0 and takes the excess back from the
  largest entries so the total is exactly ``merge_num``;
  ``compat='openmixup'`` keeps OpenMixup's effective behaviour (a negative
  entry merges nothing, so 102 tokens are merged).
"""
import math
from typing import List, Optional, Sequence, Tuple, Union

__all__ = [
    'parse_r', 'search_r', 'openmixup_raw_schedule', 'schedule_from_merge_num',
    'schedule_from_setting', 'check_schedule', 'resolve_schedule',
    'SCHEDULE_COMPATS'
]

RType = Union[int, Tuple[int, float], Sequence[int]]
SCHEDULE_COMPATS = (None, 'openmixup')


def _check_int(value, name: str, allow_negative: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import numpy as np
            if isinstance(value, np.integer):
                value = int(value)
        except ImportError:  # pragma: no cover
            pass
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f'{name}={value!r} must be an integer')
    if value < 0 and not allow_negative:
        raise ValueError(f'{name}={value} must be non-negative')
    return value


def _linear_schedule(num_layers: int, r: int, inflect: float) -> List[int]:
    """ToMe's linear schedule (values truncated toward zero)."""
    min_val = int(r * (1.0 - inflect))
    max_val = 2 * r - min_val
    if num_layers == 1:
        return [min_val]
    step = (max_val - min_val) / (num_layers - 1)
    return [int(min_val + step * i) for i in range(num_layers)]


def parse_r(num_layers: int,
            r: RType,
            total: Optional[int] = None) -> List[int]:
    """Expand ToMe's ``r`` into one value per block.

    Args:
        num_layers (int): Number of blocks.
        r (int | tuple[int, float] | list[int]): Constant ``r``; a 2-tuple
            ``(r, inflect)`` with ``inflect`` in ``[-1, 1]`` (``-1`` is the
            "decreasing schedule", ``0`` constant); or an explicit list (any
            sequence that is not a 2-tuple), padded with zeros to
            ``num_layers``.
        total (int, optional): Force the schedule to sum to ``total`` by
            adding the remainder to the first block (``inflect < 0``) or the
            last block (otherwise), as OpenMixup does. Ignored for lists.
            The result may then contain negative entries; use
            :func:`schedule_from_merge_num` for a clean schedule.
            Defaults to None.

    Returns:
        list[int]: ``r`` per block.

    Raises:
        ValueError: For a negative ``r``, an ``inflect`` outside ``[-1, 1]``,
            a list longer than ``num_layers`` or with negative entries.
    """
    num_layers = _check_int(num_layers, 'num_layers')
    if num_layers < 1:
        raise ValueError(f'num_layers={num_layers} must be >= 1')
    if isinstance(
            r, (list, tuple)) and not (isinstance(r, tuple) and len(r) == 2):
        values = [_check_int(v, f'tome_r[{i}]') for i, v in enumerate(r)]
        if len(values) > num_layers:
            raise ValueError(
                f'tome_r has {len(values)} entries but the backbone has only '
                f'{num_layers} blocks')
        return values + [0] * (num_layers - len(values))
    inflect = 0.0
    if isinstance(r, tuple):
        r, inflect = r
        if not -1.0 <= float(inflect) <= 1.0:
            raise ValueError(
                f'tome_r inflection={inflect} must lie in [-1, 1]')
    r = _check_int(r, 'tome_r')
    r_list = _linear_schedule(num_layers, r, float(inflect))
    if total is not None:
        remainder = total - sum(r_list)
        if remainder:
            r_list[0 if inflect < 0 else -1] += remainder
    return r_list


def search_r(num_layers: int, merge_num: int, inflect: float = -0.5) -> int:
    """Integer ``r`` whose ``(r, inflect)`` schedule sums closest to
    ``merge_num`` (first best; the search stops once the gap grows).

    Args:
        num_layers (int): Number of blocks.
        merge_num (int): Target number of merged tokens.
        inflect (float): Inflection. Defaults to -0.5.

    Returns:
        int: The best ``r`` (0 when ``merge_num`` is 0).
    """
    best_r, best_gap = 0, math.inf
    for r in range(merge_num):
        gap = abs(sum(_linear_schedule(num_layers, r, inflect)) - merge_num)
        if gap < best_gap:
            best_r, best_gap = r, gap
        elif gap > best_gap:
            break
    return best_r


def openmixup_raw_schedule(num_layers: int,
                           merge_num: int,
                           inflect: float = -0.5) -> List[int]:
    """The schedule exactly as OpenMixup computes it (may contain negative
    entries, e.g. ``-4`` first for 24 blocks and ``merge_num=98``)."""
    num_layers = _check_int(num_layers, 'num_layers')
    merge_num = _check_int(merge_num, 'merge_num')
    if num_layers < 1:
        raise ValueError(f'num_layers={num_layers} must be >= 1')
    if not -1.0 <= float(inflect) <= 1.0:
        raise ValueError(f'merge_inflect={inflect} must lie in [-1, 1]')
    if num_layers == 1:
        return [merge_num]
    r = search_r(num_layers, merge_num, inflect)
    return parse_r(num_layers, (r, float(inflect)), total=merge_num)


def schedule_from_merge_num(num_layers: int,
                            merge_num: int,
                            inflect: float = -0.5,
                            compat: Optional[str] = None,
                            num_tokens: Optional[int] = None,
                            num_protected: int = 1) -> List[int]:
    """Spread ``merge_num`` merged tokens over the blocks.

    Args:
        num_layers (int): Number of blocks.
        merge_num (int): Total number of tokens to merge.
        inflect (float): Inflection of the linear schedule. Defaults to -0.5
            (decreasing, as in MergeMix).
        compat (str, optional): ``None`` (default): negative entries are set
            to 0 and the excess is taken from the largest entries (ties: the
            latest block) so the sum is exactly ``merge_num``.
            ``'openmixup'``: negative entries become 0 without compensation,
            which is what OpenMixup effectively merges.
        num_tokens (int, optional): If given, the schedule is validated with
            :func:`check_schedule` for this many input tokens.
        num_protected (int): Protected tokens for that check. Defaults to 1.

    Returns:
        list[int]: ``r`` per block, all non-negative.

    Raises:
        ValueError: For a negative ``merge_num``, an unknown ``compat`` or,
            with ``num_tokens``, a schedule the blocks cannot merge.
    """
    if compat not in SCHEDULE_COMPATS:
        raise ValueError(f'schedule_compat={compat!r} must be one of '
                         f'{SCHEDULE_COMPATS}')
    raw = openmixup_raw_schedule(num_layers, merge_num, inflect)
    r_list = [max(v, 0) for v in raw]
    if compat is None:
        excess = sum(r_list) - merge_num
        while excess > 0:
            top = max(r_list)
            idx = len(r_list) - 1 - r_list[::-1].index(top)
            r_list[idx] -= 1
            excess -= 1
    if num_tokens is not None:
        check_schedule(
            r_list,
            num_tokens,
            num_protected,
            setting=f'merge_num={merge_num}')
    return r_list


def schedule_from_setting(setting: str,
                          num_layers: int,
                          inflect: float = -0.5,
                          compat: Optional[str] = None) -> List[int]:
    """``r`` per block for a setting name of the ToMe tools.

    Args:
        setting (str): ``'none'`` (no merging), ``'merge<N>'`` (MergeMix's
            schedule of ``N`` merged tokens, :func:`schedule_from_merge_num`)
            or ``'r<N>'`` (ToMe's constant ``r=N``, :func:`parse_r`).
        num_layers (int): Number of blocks.
        inflect (float): Inflection of the ``'merge<N>'`` schedule (a
            backbone's ``merge_inflect``). Defaults to -0.5.
        compat (str, optional): ``schedule_compat`` of the ``'merge<N>'``
            schedule. Defaults to None.

    Returns:
        list[int]: ``r`` per block.

    Raises:
        ValueError: For any other setting name.
    """
    if setting == 'none':
        return [0] * num_layers
    if setting.startswith('merge') and setting[5:].isdigit():
        return schedule_from_merge_num(
            num_layers, int(setting[5:]), inflect=inflect, compat=compat)
    if setting.startswith('r') and setting[1:].isdigit():
        return parse_r(num_layers, int(setting[1:]))
    raise ValueError(
        f"setting {setting!r} must be 'none', 'merge<N>' or 'r<N>'")


def check_schedule(r_list: Sequence[int],
                   num_tokens: int,
                   num_protected: int = 1,
                   setting: str = 'tome_r') -> List[int]:
    """Validate a schedule and return the token counts it produces.

    Args:
        r_list (Sequence[int]): ``r`` per block.
        num_tokens (int): Tokens entering the first block (extra + patches).
        num_protected (int): Tokens that can never be merged. Defaults to 1.
        setting (str): Name of the user setting, used in error messages.
            Defaults to ``'tome_r'``.

    Returns:
        list[int]: ``len(r_list) + 1`` counts: element ``i`` is the number of
        tokens entering block ``i``; the last one is the final count.

    Raises:
        ValueError: If an entry is negative or exceeds
            ``(T - num_protected) // 2`` for the ``T`` tokens entering its
            block.
    """
    counts = [num_tokens]
    t = num_tokens
    for i, r in enumerate(r_list):
        if isinstance(r, bool) or int(r) != r:
            raise ValueError(f'{setting}: r={r!r} at block {i} is not an int')
        r = int(r)
        if r < 0:
            raise ValueError(f'{setting}: r={r} at block {i} is negative')
        max_r = max((t - num_protected) // 2, 0)
        if r > max_r:
            raise ValueError(
                f'{setting}: block {i} would merge r={r} tokens but only '
                f'{max_r} of its {t} tokens ({num_protected} protected) can '
                f'be merged; total requested {sum(int(v) for v in r_list)}')
        t -= r
        counts.append(t)
    return counts


def resolve_schedule(num_layers: int,
                     merge_num: Optional[int] = None,
                     tome_r: Optional[RType] = None,
                     inflect: float = -0.5,
                     compat: Optional[str] = None) -> List[int]:
    """Turn the user-facing ``merge_num`` / ``tome_r`` pair into ``r`` per
    block.

    Args:
        num_layers (int): Number of blocks.
        merge_num (int, optional): Total merged tokens (MergeMix style).
        tome_r (int | tuple | list, optional): ToMe ``r`` (see
            :func:`parse_r`).
        inflect (float): Inflection used with ``merge_num``. Defaults to -0.5.
        compat (str, optional): See :func:`schedule_from_merge_num`.

    Returns:
        list[int]: ``r`` per block (all zeros when neither is set).

    Raises:
        ValueError: If both ``merge_num`` (non-zero) and ``tome_r`` are given.
    """
    if tome_r is not None and merge_num:
        raise ValueError(
            f'merge_num={merge_num} and tome_r={tome_r!r} are mutually '
            'exclusive; set only one of them')
    if tome_r is not None:
        return parse_r(num_layers, tome_r)
    return schedule_from_merge_num(num_layers, merge_num or 0, inflect, compat)
