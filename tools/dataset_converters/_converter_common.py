"""Pieces shared by the ``prepare_*.py`` converters.

The archive reading and file placing live in
:mod:`mergemix_mm.datasets.archives`; this module holds what the converters
repeat around them: ``--archive`` / ``--src-dir`` inputs (extracted, or placed
from a folder), the common options and the ``main`` that runs ``--check`` or
the preparation and reports the result. Nothing here touches the network.
"""
import argparse
import os
import os.path as osp
import sys
import tarfile
import zipfile
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from tqdm import tqdm

from mergemix_mm.datasets.archives import (PLACE_MODES, iter_archive_files,
                                           place_file, report_check,
                                           require_file, strip_top_folder,
                                           write_fileobj)

__all__ = [
    'source_folder', 'iter_folder_files', 'extract_or_place',
    'add_check_arg', 'add_mode_arg', 'source_parser', 'run_converter'
]


def source_folder(archive: Optional[str], src_dir: Optional[str],
                  archive_what: str, top: str) -> Optional[str]:
    """Check that exactly one input is given and that it exists.

    Args:
        archive (str, optional): The ``--archive`` file.
        src_dir (str, optional): The ``--src-dir`` folder.
        archive_what (str): What the archive is, for the message (e.g.
            ``'--archive (CUB_200_2011.tgz)'``).
        top (str): The archive's top folder; ``src_dir/top`` is used when
            it exists.

    Returns:
        str | None: The folder to read (None for an archive).

    Raises:
        ValueError: If neither or both inputs are given.
        FileNotFoundError: If the input does not exist.
    """
    if (archive is None) == (src_dir is None):
        raise ValueError('give exactly one of --archive and --src-dir.')
    if archive is not None:
        require_file(archive, archive_what)
        return None
    if osp.isfile(src_dir):
        raise FileNotFoundError(
            f'--src-dir: {src_dir!r} is a file, not a folder (an archive goes '
            'to --archive).')
    if not osp.isdir(src_dir):
        raise FileNotFoundError(f'--src-dir: {src_dir!r} does not exist.')
    if osp.isdir(osp.join(src_dir, top)):
        return osp.join(src_dir, top)
    return src_dir


def iter_folder_files(folder: str,
                      progress: bool = False) -> Iterator[Tuple[str, str]]:
    """Every file below ``folder``.

    Args:
        folder (str): The folder to walk.
        progress (bool): Show a bar over the sub-folders (on stderr).
            Defaults to False.

    Yields:
        tuple: ``(path, path relative to folder with '/' separators)``.
    """
    walk = os.walk(folder)
    if progress:
        walk = tqdm(list(walk), desc='folders', file=sys.stderr)
    for root, _, files in walk:
        for fn in files:
            src = osp.join(root, fn)
            yield src, osp.relpath(src, folder).replace(os.sep, '/')


def extract_or_place(out: str,
                     archive: Optional[str],
                     src_dir: Optional[str],
                     mode: str,
                     top: str,
                     archive_what: str,
                     desc: str,
                     route: Optional[Callable[[str], Optional[str]]] = None,
                     progress: bool = False) -> None:
    """Extract ``archive`` (or place the files of ``src_dir``) into ``out``.

    Archive members lose the ``top`` folder; files of ``src_dir`` (or of
    ``src_dir/top`` when it exists) keep their path relative to it.

    Args:
        out (str): Output folder.
        archive (str, optional): The ``--archive`` file.
        src_dir (str, optional): The ``--src-dir`` folder.
        mode (str): How files from ``src_dir`` are placed.
        top (str): The archive's top folder.
        archive_what (str): What the archive is, for the messages.
        desc (str): Progress-bar label of the archive.
        route (callable, optional): Maps a relative input path to its
            output path (relative to ``out``), or to None to skip the file.
            Defaults to None (keep every file where it is).
        progress (bool): Show a bar while walking ``src_dir``. Defaults to
            False.

    Raises:
        ValueError: If neither or both inputs are given.
        FileNotFoundError: If the input does not exist.
    """
    folder = source_folder(archive, src_dir, archive_what, top)
    route = route or (lambda rel: rel)
    count = 0
    if folder is None:
        for name, f in iter_archive_files(archive, desc=desc):
            dest = route(strip_top_folder(name, top))
            if dest is not None:
                write_fileobj(f, osp.join(out, dest))
                count += 1
        if not count:
            raise ValueError(f'{archive_what}: {archive!r} holds no files of '
                             'the dataset; nothing was written.')
        return
    for src, rel in iter_folder_files(folder, progress):
        dest = route(rel)
        if dest is not None:
            place_file(src, osp.join(out, dest), mode)
            count += 1
    if not count:
        raise ValueError(
            f'--src-dir: {src_dir!r} holds no files of the dataset (expected '
            f'the extracted {top!r} folder, or the folder that contains it); '
            'nothing was written.')


def add_check_arg(group) -> None:
    """Add ``--check DIR`` to a parser or argument group."""
    group.add_argument(
        '--check',
        metavar='DIR',
        help='only validate a prepared folder and name what is missing')


def add_mode_arg(parser: argparse.ArgumentParser,
                 help: str = 'how files from --src-dir are placed',
                 default: str = 'copy',
                 choices: Sequence[str] = PLACE_MODES) -> None:
    """Add ``--mode`` (how files from folders are placed)."""
    parser.add_argument(
        '--mode', default=default, choices=list(choices), help=help)


def source_parser(description: str,
                  archive_help: str,
                  src_dir_help: str,
                  out_default: str,
                  out_help: str = 'output folder',
                  modes: Sequence[str] = PLACE_MODES
                  ) -> argparse.ArgumentParser:
    """The parser of a one-archive converter: exactly one of ``--archive``,
    ``--src-dir`` and ``--check``, then ``--out`` and ``--mode``.

    Args:
        description (str): The parser description.
        archive_help (str): Help of ``--archive``.
        src_dir_help (str): Help of ``--src-dir``.
        out_default (str): Default of ``--out``.
        out_help (str): Help of ``--out``. Defaults to ``'output folder'``.
        modes (Sequence[str]): Choices of ``--mode``. Defaults to all.

    Returns:
        argparse.ArgumentParser: More options may be added.
    """
    parser = argparse.ArgumentParser(description=description)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument('--archive', help=archive_help)
    src.add_argument('--src-dir', help=src_dir_help)
    add_check_arg(src)
    parser.add_argument('--out', default=out_default, help=out_help)
    add_mode_arg(parser, choices=modes)
    return parser


def run_converter(dataset_name: str, args: argparse.Namespace,
                  check: Callable[[str], List[str]],
                  prepare: Callable[[], List[str]]) -> int:
    """The converters' ``main``: ``--check`` only, or prepare and check.

    Args:
        dataset_name (str): Name in the report.
        args (argparse.Namespace): Parsed options (``check`` and ``out``).
        check (callable): ``check(folder)`` lists the problems of a prepared
            folder.
        prepare (callable): ``prepare()`` prepares ``args.out`` and lists
            its problems.

    Returns:
        int: 0 when ready, 1 when problems remain, 2 when the inputs are
        wrong (the error goes to stderr).
    """
    if args.check:
        return report_check(dataset_name, args.check, check(args.check))
    try:
        problems = prepare()
    except (ValueError, FileNotFoundError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    except (tarfile.ReadError, zipfile.BadZipFile, EOFError) as err:
        # a truncated or corrupt archive; files already extracted from it
        # are complete (written to a temporary file, then renamed)
        print(f'error: an input archive is truncated or corrupt ({err}); '
              'download it again', file=sys.stderr)
        return 2
    return report_check(dataset_name, args.out, problems)
