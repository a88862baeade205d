"""The session tests' throwaway redis-server, for the drain tests' real processes."""

from sessions.conftest import redis_process, redis_server

__all__ = ["redis_process", "redis_server"]
