"""Reading dataset archives already on disk (tar, tar.gz, tgz, zip).

Helpers for the offline converters in ``tools/dataset_converters``: stream the
files of an archive one by one (member names are checked so nothing is written
outside the output folder), write them, place files from an extracted folder
(copy / symlink / hardlink), and report ``--check`` results. Nothing here
touches the network.
"""
import os
import os.path as osp
import posixpath
import shutil
import sys
import tarfile
import zipfile
from typing import IO, Iterator, Optional, Sequence, Tuple

from tqdm import tqdm

__all__ = [
    'ARCHIVE_SUFFIXES', 'is_archive', 'safe_member_name', 'iter_archive_files',
    'iter_nested_tar_files', 'strip_top_folder', 'write_fileobj',
    'place_file', 'require_file', 'report_check',
    'write_lines'
]

ARCHIVE_SUFFIXES = ('.tar', '.tar.gz', '.tgz', '.tar.bz2', '.tar.xz', '.zip')
PLACE_MODES = ('copy', 'symlink', 'hardlink', 'move')


def is_archive(path: str) -> bool:
    """Whether ``path`` has one of :data:`ARCHIVE_SUFFIXES`."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def require_file(path: str, what: str) -> str:
    """Return ``path`` if it is an existing file, else raise.

    Args:
        path (str): The path given by the user.
        what (str): What the file is, for the message (e.g.
            ``'--archive (cifar-100-python.tar.gz)'``).

    Returns:
        str: ``path``.

    Raises:
        FileNotFoundError: Naming ``what`` and ``path``; the converters never
            download anything.
    """
    if osp.isdir(path):
        raise FileNotFoundError(f'{what}: {path!r} is a folder, not a file.')
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{what}: {path!r} does not exist. The converters only read '
            'archives already on disk and never download; obtain the file '
            'from the dataset provider first.')
    return path


def safe_member_name(name: str) -> Optional[str]:
    """Normalise an archive member name; reject names escaping the output.

    Args:
        name (str): Member name as stored in the archive.

    Returns:
        str | None: The normalised relative POSIX path, or None for an
        empty name (e.g. ``'./'``).

    Raises:
        ValueError: For absolute names or names containing ``..``.
    """
    norm = posixpath.normpath(name.replace('\\', '/'))
    if norm in ('.', ''):
        return None
    if norm.startswith('/') or norm == '..' or norm.startswith('../') or \
            (len(norm) > 1 and norm[1] == ':'):
        raise ValueError(f'unsafe archive member name {name!r} (absolute or '
                         "containing '..'); refusing to extract it.")
    return norm


def iter_archive_files(path: str,
                       desc: Optional[str] = None
                       ) -> Iterator[Tuple[str, IO[bytes]]]:
    """Yield ``(name, fileobj)`` for every regular file in an archive.

    Members are read in archive order (tar files are streamed, so a ``.tar``
    of 140 GB is read once, sequentially). Each ``fileobj`` is only valid
    until the next item is requested. A tqdm bar counts the files.

    Args:
        path (str): A ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``,
            ``.tar.xz`` or ``.zip`` file.
        desc (str, optional): Progress bar label. Defaults to the file name.

    Yields:
        tuple: The normalised member name and a readable binary file object.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the format is not recognised, a member name is
            unsafe or the archive is truncated (while reading its headers;
            a member whose data is cut off raises ``tarfile.ReadError`` when
            it is read).
    """
    require_file(path, 'archive')
    desc = desc or osp.basename(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            for info in tqdm(infos, desc=desc, unit='file', file=sys.stderr):
                name = safe_member_name(info.filename)
                if name is None:
                    continue
                with zf.open(info) as f:
                    yield name, f
        return
    try:
        tf = tarfile.open(path, mode='r|*')
    except tarfile.TarError as err:
        raise ValueError(f'{path!r} is neither a zip nor a tar archive '
                         f'({err}).') from err
    with tf, tqdm(desc=desc, unit='file', file=sys.stderr) as bar:
        try:
            for member in tf:
                if not member.isfile():
                    continue
                name = safe_member_name(member.name)
                if name is None:
                    continue
                f = tf.extractfile(member)
                if f is None:
                    continue
                yield name, f
                bar.update(1)
        except (tarfile.ReadError, EOFError) as err:
            raise ValueError(f'archive {path!r} is truncated or corrupt '
                             f'({err}); download it again.') from err


def strip_top_folder(name: str, folder: str) -> str:
    """Remove a leading ``folder/`` from an archive member name, if present.

    Args:
        name (str): Normalised member name.
        folder (str): Top folder name (e.g. ``'CUB_200_2011'``).

    Returns:
        str: ``name`` relative to ``folder`` (unchanged if it is not under
        it).
    """
    prefix = folder.rstrip('/') + '/'
    return name[len(prefix):] if name.startswith(prefix) else name


def iter_nested_tar_files(
        fileobj: IO[bytes]) -> Iterator[Tuple[str, IO[bytes]]]:
    """Yield ``(name, fileobj)`` for the files of a tar read from a stream.

    Used for ImageNet's training tarball, which holds one tar per class.

    Args:
        fileobj (IO[bytes]): Readable stream of a tar archive.

    Yields:
        tuple: Normalised member name and file object.
    """
    with tarfile.open(fileobj=fileobj, mode='r|*') as tf:
        for member in tf:
            if not member.isfile():
                continue
            name = safe_member_name(member.name)
            f = tf.extractfile(member)
            if name is None or f is None:
                continue
            yield name, f


def write_fileobj(fileobj: IO[bytes], dest: str) -> None:
    """Write a stream to ``dest``, creating parent folders.

    The bytes go to a temporary file next to ``dest`` that is renamed into
    place once the stream is read to its end: a truncated archive (the read
    fails) leaves no half-written ``dest``.

    Args:
        fileobj (IO[bytes]): Source stream.
        dest (str): Destination file path.
    """
    from ..utils.checkpoint_safety import atomic_write_stream
    atomic_write_stream(fileobj, dest)


def place_file(src: str, dst: str, mode: str = 'copy') -> None:
    """Put ``src`` at ``dst`` by copying, linking or moving it.

    Args:
        src (str): Existing file.
        dst (str): Destination path (parents are created; an existing file
            is replaced).
        mode (str): ``'copy'``, ``'symlink'`` (absolute link),
            ``'hardlink'`` or ``'move'``. Defaults to ``'copy'``.
    """
    if mode not in PLACE_MODES:
        raise ValueError(f'mode={mode!r} is not valid; use one of '
                         f'{PLACE_MODES}.')
    if osp.abspath(src) == osp.abspath(dst):
        return
    os.makedirs(osp.dirname(dst) or '.', exist_ok=True)
    if osp.lexists(dst):
        os.remove(dst)
    if mode == 'copy':
        shutil.copyfile(src, dst)
    elif mode == 'symlink':
        os.symlink(osp.abspath(src), dst)
    elif mode == 'hardlink':
        os.link(src, dst)
    else:
        shutil.move(src, dst)


def write_lines(path: str, lines: Sequence[str]) -> None:
    """Write ``lines`` to a text file (one per line), creating parents."""
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        for line in lines:
            f.write(f'{line}\n')


def report_check(dataset_name: str, root: str,
                 problems: Sequence[str]) -> int:
    """Print the result of a ``--check`` and return the exit status.

    Args:
        dataset_name (str): Dataset name for the message.
        root (str): The checked folder.
        problems (Sequence[str]): Problems found.

    Returns:
        int: 0 if ``problems`` is empty, else 1.
    """
    if not problems:
        print(f'OK: {dataset_name} folder {root!r} is complete.')
        return 0
    print(f'NOT READY: {dataset_name} folder {root!r} has '
          f'{len(problems)} problem(s):')
    for p in problems:
        print(f'  - {p}')
    return 1
