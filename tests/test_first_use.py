"""What a newcomer tripped over on a first use (issue 27): each wrong file, folder or argument is one
line that says what to do, in the command line and in the library's own error types."""

import pytest
import torch

import biasprobe as bp
from biasprobe.errors import CheckpointError
from biasprobe.formats import supported

from .conftest import run_cli, tiny_checkpoint
from .test_cli import assert_one_line_error


@pytest.mark.parametrize("name, contents", [("notes.txt", b"hello, this is no checkpoint\n"),
                                            ("picture.pt", b"\x89PNG\r\n\x1a\n" + bytes(100))])
def test_a_file_of_another_kind_is_refused_with_the_supported_formats(tmp_path, name, contents):
    (tmp_path / name).write_bytes(contents)
    shown = run_cli("info", tmp_path / name)
    assert_one_line_error(shown, "is neither a zip archive nor a pickle")
    line = shown.stderr.strip()
    assert not line.rstrip(")").endswith(": 101") and all(what in line for what in supported().values())
    with pytest.raises(CheckpointError, match="Supported: "):
        bp.load(tmp_path / name)
