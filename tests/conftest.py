import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The offline data mirror (FLAKE_DATA_MIRROR); tests that need real data skip without it."""
    value = os.environ.get("FLAKE_DATA_MIRROR", "")
    if not value or not Path(value).is_dir():
        pytest.skip("no data mirror: set FLAKE_DATA_MIRROR (./run_tests.sh uses ../shared/data)")
    return Path(value)
