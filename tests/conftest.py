import os
from pathlib import Path

import pytest

from flake_lib.serving import pinning

# a container with a CPU quota below its CPU set (2 CPUs' worth on a large host) runs the tests, and the
# processes they start, on as many CPUs as it pays for (thread pools size themselves from the CPU set)
pinning.fit_to_quota()
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The offline data mirror (FLAKE_DATA_MIRROR); tests that need real data skip without it."""
    value = os.environ.get("FLAKE_DATA_MIRROR", "")
    if not value or not Path(value).is_dir():
        pytest.skip("no data mirror: set FLAKE_DATA_MIRROR (./run_tests.sh uses ../shared/data)")
    return Path(value)
