"""The suite's own machinery: the tests that share multiprocessing's forkserver run in one xdist
worker (`make test` passes --dist loadgroup), so the suite starts one forkserver, not one per
worker. pytest-xdist groups by renaming node ids, which pytest 9.2 silently ignores
(pytest-xdist#1386); pyproject.toml keeps pytest below 9.2 until that is fixed."""

from __future__ import annotations

import pytest

from tests.conftest import FORKSERVER


@FORKSERVER
def test_the_forkserver_tests_are_one_group(request: pytest.FixtureRequest) -> None:
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("groups exist only under xdist's --dist loadgroup, as `make test` runs")
    assert request.node.nodeid.endswith("@forkserver"), (
        "pytest-xdist no longer groups the forkserver tests: each worker starts its own forkserver"
    )
