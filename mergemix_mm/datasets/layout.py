"""Shared helpers to verify a prepared dataset folder and explain what is
missing.

The dataset classes call them before loading, so that a config pointing at a
missing or half-prepared folder fails with a message that names each missing
split/file and the offline converter command that prepares it. The converters
in ``tools/dataset_converters`` use the same checks for ``--check``.
"""
import os.path as osp
from typing import Iterable, List, Optional, Sequence, Tuple

__all__ = [
    'DatasetLayoutError', 'is_local_path', 'format_layout_problems',
    'raise_if_problems', 'sample_missing_files', 'missing_images_problems',
    'read_lines', 'parse_annotation_lines'
]

#: Documentation page that describes every layout.
DOCS_PAGE = 'docs/datasets.md'


class DatasetLayoutError(FileNotFoundError):
    """A dataset folder is missing, or lacks a split / annotation file."""


def is_local_path(path: str) -> bool:
    """Whether ``path`` is on the local file system (not ``s3://`` etc.).

    Args:
        path (str): A path or URI.

    Returns:
        bool: False for URIs with a scheme other than ``file``.
    """
    path = str(path)
    if '://' in path:
        return path.startswith('file://')
    return True


def format_layout_problems(dataset_name: str, data_root: str,
                           problems: Sequence[str],
                           prepare_cmd: Optional[str]) -> str:
    """Build the message listing what is wrong with a dataset folder.

    Args:
        dataset_name (str): Name shown first (e.g. ``'CIFAR100Local'``).
        data_root (str): The folder that was checked.
        problems (Sequence[str]): One line per problem; each names the
            split and the path.
        prepare_cmd (str, optional): The converter command that prepares
            the folder offline.

    Returns:
        str: The message.
    """
    where = repr(data_root)
    if is_local_path(data_root) and not osp.isabs(data_root):
        where += f' (resolved from the working directory to ' \
                 f'{osp.abspath(data_root)!r})'
    lines = [f'{dataset_name}: the dataset folder {where} is not ready.']
    if prepare_cmd:
        lines.append('Prepare it offline (nothing is downloaded) with:')
        lines.append(f'  {prepare_cmd}')
    lines.append(f'The expected layouts are described in {DOCS_PAGE}. '
                 f'{len(problems)} problem(s):')
    # The problems come last so that the final line of a traceback names a
    # path.
    lines += [f'  - {p}' for p in problems]
    return '\n'.join(lines)


def raise_if_problems(dataset_name: str, data_root: str,
                      problems: Sequence[str],
                      prepare_cmd: Optional[str]) -> None:
    """Raise :class:`DatasetLayoutError` when ``problems`` is not empty.

    Args:
        dataset_name (str): Name shown first in the message.
        data_root (str): The folder that was checked.
        problems (Sequence[str]): Problems found; nothing happens if empty.
        prepare_cmd (str, optional): The converter command to suggest.

    Raises:
        DatasetLayoutError: Listing every problem.
    """
    if problems:
        raise DatasetLayoutError(
            format_layout_problems(dataset_name, data_root, problems,
                                   prepare_cmd))


def sample_missing_files(paths: Sequence[str],
                         max_checked: Optional[int] = 100) -> List[str]:
    """Return the paths among an evenly spaced sample that do not exist.

    Args:
        paths (Sequence[str]): Candidate file paths.
        max_checked (int, optional): How many to stat at most (evenly
            spaced, first and last included). ``None`` checks all of them.
            Defaults to 100.

    Returns:
        list[str]: Paths that are not existing files.
    """
    n = len(paths)
    if n == 0:
        return []
    if max_checked is None or max_checked >= n:
        idx: Iterable[int] = range(n)
    elif max_checked <= 0:
        return []
    elif max_checked == 1:
        idx = [0]
    else:
        step = (n - 1) / (max_checked - 1)
        idx = sorted({round(i * step) for i in range(max_checked)})
    return [paths[i] for i in idx if not osp.isfile(paths[i])]


def missing_images_problems(split: str,
                            paths: Sequence[str],
                            max_checked: Optional[int] = 100) -> List[str]:
    """The problem message of a split whose listed images are missing.

    Args:
        split (str): The split, named in the message.
        paths (Sequence[str]): The images the split's annotations list.
        max_checked (int, optional): How many to stat at most (see
            :func:`sample_missing_files`). Defaults to 100.

    Returns:
        list[str]: One message naming the count and the first missing path,
        or an empty list when every sampled image exists.
    """
    missing = sample_missing_files(paths, max_checked)
    if not missing:
        return []
    return [f'split {split!r}: {len(missing)} listed image(s) do not exist, '
            f'e.g. {missing[0]!r}']


def read_lines(path: str) -> List[str]:
    """Read the non-empty, stripped lines of a text file.

    Args:
        path (str): File path.

    Returns:
        list[str]: The lines.
    """
    with open(path, encoding='utf-8') as f:
        return [line.strip() for line in f if line.strip()]


def parse_annotation_lines(
        lines: Sequence[str]) -> List[Tuple[str, Optional[int]]]:
    """Split ``"<path> <label>"`` annotation lines.

    Args:
        lines (Sequence[str]): Lines of a ``meta/<split>.txt`` file.

    Returns:
        list[tuple[str, int | None]]: ``(path, label)`` per line; ``label``
        is None when the line is not a path and a non-negative integer.
    """
    parsed = []
    for line in lines:
        row = line.rsplit(' ', 1)
        if len(row) == 2 and row[1].isdigit():
            parsed.append((row[0], int(row[1])))
        else:
            parsed.append((line, None))
    return parsed
