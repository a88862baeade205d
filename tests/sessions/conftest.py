"""A throwaway redis-server on a free loopback port, with no persistence, for the session tests.

One server serves the whole test session; each test gets it running and empty. Outage tests
`stop()` it and `start()` it again on the same port (empty, as a real restart without
persistence would be).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from .redis_server import RedisServer, free_port


@pytest.fixture(scope="session")
def redis_process() -> Iterator[RedisServer]:
    """Missing redis-server skips on a developer's machine but fails in CI (make installs it)."""
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed (make test installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = RedisServer(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(redis_process: RedisServer) -> RedisServer:
    """The test session's redis-server, running and empty."""
    if redis_process.running:
        redis_process.resume()
    else:
        redis_process.start()
    with redis_process.client() as client:
        client.flushall()
        client.config_resetstat()
    return redis_process
