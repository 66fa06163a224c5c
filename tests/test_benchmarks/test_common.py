"""Result files of the benchmarks are written whole or not at all."""
import argparse
import json
import os
import os.path as osp
import sys

import pytest

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'benchmarks'))

import common  # noqa: E402


def test_a_failed_write_keeps_the_previous_results(tmp_path):
    common.write_results('res', dict(a=1), '# old table', str(tmp_path))
    # json's default=float cannot turn an object into a number: the dump
    # fails after '{"a": ' would have been written
    with pytest.raises(TypeError):
        common.write_results('res', dict(a=object()), '# new table',
                             str(tmp_path))
    assert json.loads((tmp_path / 'res.json').read_text()) == dict(a=1)
    assert (tmp_path / 'res.md').read_text() == '# old table\n'
    assert sorted(os.listdir(tmp_path)) == ['res.json', 'res.md']


def test_a_failed_json_write_leaves_no_file(tmp_path):
    with pytest.raises(TypeError):
        common.write_json(str(tmp_path / 'partial.json'), dict(a=object()))
    assert os.listdir(tmp_path) == []
    common.write_json(str(tmp_path / 'partial.json'), dict(a=2), indent=1)
    assert json.loads((tmp_path / 'partial.json').read_text()) == dict(a=2)


def test_result_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    common.write_results('res', dict(a=1), '# table', str(tmp_path))
    for name in ('res.json', 'res.md'):
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o666 & ~umask


def test_the_table_is_complete_before_the_json_is_replaced(tmp_path,
                                                           monkeypatch):
    """A failure writing the new table leaves the previous JSON: a new
    JSON never sits next to a stale table."""
    from mergemix_mm.utils import checkpoint_safety
    common.write_results('res', dict(a=1), '# old table', str(tmp_path))
    write = checkpoint_safety.atomic_write_text

    def failing_table(text, filename):
        if filename.endswith('.md'):
            raise OSError(28, 'No space left on device')
        write(text, filename)

    monkeypatch.setattr(checkpoint_safety, 'atomic_write_text',
                        failing_table)
    with pytest.raises(OSError):
        common.write_results('res', dict(a=2), '# new table', str(tmp_path))
    assert json.loads((tmp_path / 'res.json').read_text()) == dict(a=1)


def test_write_json_creates_the_folder_and_passes_the_options(tmp_path):
    path = tmp_path / 'new' / 'x.json'
    common.write_json(str(path), dict(a=2), indent=1)
    assert path.read_text() == '{\n "a": 2\n}'


def test_count_types():
    assert common.positive_int('1') == 1
    assert common.non_negative_int('0') == 0
    for parse, text in ((common.positive_int, '0'),
                        (common.non_negative_int, '-1')):
        with pytest.raises(argparse.ArgumentTypeError, match='must be >='):
            parse(text)
