"""Optional caches in front of the component stores (Redis), never required to answer."""

from .redis_client import ResilientRedis, redis_display_url

__all__ = ["ResilientRedis", "redis_display_url"]
