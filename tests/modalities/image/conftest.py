"""A real image folder for the prepare and folder tests: JPEG and PNG files in class subfolders, train and val."""

from __future__ import annotations

from pathlib import Path

import pytest
from imagefiles import make_folder


@pytest.fixture
def photos(tmp_path) -> Path:
    return make_folder(tmp_path / "photos")
