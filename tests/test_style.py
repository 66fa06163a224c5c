"""The code base keeps to pycodestyle (PEP 8) with 79-character lines, so a
style slip cannot land unnoticed."""
import os.path as osp

import pycodestyle

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
CHECKED = ('mergemix_mm', 'tools', 'benchmarks', 'tests', 'configs',
           'setup.py')


def test_code_follows_pycodestyle(capsys):
    style = pycodestyle.StyleGuide(max_line_length=79)
    report = style.check_files([osp.join(ROOT, p) for p in CHECKED])
    # the report printed each finding as path:line:col: code message
    assert report.total_errors == 0, capsys.readouterr().out
