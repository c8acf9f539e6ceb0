"""Helpers the command-line tests share (tests/ is on sys.path: its conftest.py is there)."""

from selfsup.cli import main


def run_cli(capsys, *argv):
    """Run ``selfsup ARGV`` in this process: (exit status, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err
