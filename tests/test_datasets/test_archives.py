"""Archive member names: unsafe ones (absolute, escaping with '..') are
refused before anything is extracted."""
import pytest

from mergemix_mm.datasets.archives import (iter_archive_files,
                                           safe_member_name,
                                           strip_top_folder)

from dataset_archives import write_tar


@pytest.mark.parametrize('name, expected', [
    ('a/b.jpg', 'a/b.jpg'),
    ('./a/./b.jpg', 'a/b.jpg'),
    ('a/../b.jpg', 'b.jpg'),
    ('a\\b.jpg', 'a/b.jpg'),
    ('..a/b.jpg', '..a/b.jpg'),
    ('./', None),
])
def test_safe_member_name_normalises(name, expected):
    assert safe_member_name(name) == expected


@pytest.mark.parametrize('name', [
    '..', '../x.jpg', 'a/../../x.jpg', '/etc/passwd', '..\\x.jpg',
    'C:/x.jpg', 'c:\\x.jpg'
])
def test_safe_member_name_refuses_escaping_names(name):
    with pytest.raises(ValueError, match='unsafe archive member name'):
        safe_member_name(name)


def test_tar_with_a_dotdot_member_is_refused(tmp_path):
    path = write_tar(str(tmp_path / 'evil.tar'),
                     {'ok/a.txt': b'a', '../evil.txt': b'x'})
    with pytest.raises(ValueError, match='evil.txt'):
        for _ in iter_archive_files(path):
            pass
    assert not (tmp_path.parent / 'evil.txt').exists()


def test_strip_top_folder():
    assert strip_top_folder('CUB/images/a.jpg', 'CUB') == 'images/a.jpg'
    assert strip_top_folder('CUB/images/a.jpg', 'CUB/') == 'images/a.jpg'
    assert strip_top_folder('CUBX/a.jpg', 'CUB') == 'CUBX/a.jpg'
