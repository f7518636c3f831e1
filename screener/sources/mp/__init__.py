"""The Materials Project as a source of hosts: ``mp-api`` with paging, retries and a local cache."""

from screener.sources.mp.cache import MPCache
from screener.sources.mp.client import MPClient
from screener.sources.mp.delta import Delta, Member, diff_members
from screener.sources.mp.settings import (
    MPAuthError,
    MPOptions,
    MPSourceError,
    read_api_key,
)
from screener.sources.mp.source import MPSource

__all__ = [
    "Delta",
    "MPAuthError",
    "MPCache",
    "MPClient",
    "MPOptions",
    "MPSource",
    "MPSourceError",
    "Member",
    "diff_members",
    "read_api_key",
]
