"""The trained model of the slow tests, shared by every module that needs it."""

from __future__ import annotations

import pytest
from helpers.scratch_model import Scratch, train_scratch


@pytest.fixture(scope="session")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Scratch:
    """Trained once per session, on first use (see helpers/scratch_model.py)."""
    return train_scratch(tmp_path_factory.mktemp("learning"))
