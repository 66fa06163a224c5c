"""Reading JSON-lines files (mmengine json logs, LLaVA-style ``.jsonl``)."""
import json
from typing import Any, List

__all__ = ['read_jsonl']


def read_jsonl(path: str, name: str = 'path') -> List[Any]:
    """Parse a JSON-lines file, one value per non-empty line.

    Args:
        path (str): The file.
        name (str): The setting the path came from, used in error messages
            (e.g. ``'data_path'``). Defaults to ``'path'``.

    Returns:
        list: The decoded values, in file order.

    Raises:
        ValueError: If a line is not valid JSON; the message names the
            setting, the file and the line number.
    """
    records = []
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(
                    f'{name}={path!r}: line {lineno} is not valid JSON '
                    f'({err.msg}, column {err.colno})') from err
    return records
