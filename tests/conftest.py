import os
import warnings

import pytest

# Tests never touch the user's cache.
os.environ.setdefault("STEADYTRAIN_CACHE_DIR", "/tmp/steadytrain-test-cache-unused")
warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture
def no_cache():
    from analyzer.ingest.load import LoadOptions

    return LoadOptions(cache_dir=None)
