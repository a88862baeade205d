"""The session tests' throwaway redis-server, for the resilience tests that restart it."""

from sessions.conftest import redis_process, redis_server

__all__ = ["redis_process", "redis_server"]
