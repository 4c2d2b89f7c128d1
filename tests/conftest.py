import os
import warnings

import pytest
from hypothesis import settings

# tests/data holds files real tools wrote and the scripts that wrote them (with those tools, which the tests do not
# need): not test modules.
collect_ignore_glob = ["data/*"]

# Tests never touch the user's cache.
os.environ.setdefault("STEADYTRAIN_CACHE_DIR", "/tmp/steadytrain-test-cache-unused")
warnings.filterwarnings("ignore", category=DeprecationWarning)

# The fuzz suite (tests/test_fuzz.py): "ci" is the bounded, reproducible run of the test suite;
# "long" is benchmarks/fuzz_long.py's (`pytest --hypothesis-profile=long`, examples from the environment).
settings.register_profile("ci", max_examples=int(os.environ.get("STEADYTRAIN_FUZZ_EXAMPLES", 40)),
                          derandomize=True, database=None, print_blob=True)
settings.register_profile("long", max_examples=int(os.environ.get("STEADYTRAIN_FUZZ_EXAMPLES", 10_000)),
                          print_blob=True)
settings.load_profile("ci")


@pytest.fixture
def no_cache():
    from analyzer.ingest.load import LoadOptions

    return LoadOptions(cache_dir=None)
