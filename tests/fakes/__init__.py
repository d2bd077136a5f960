"""Shared loopback fakes for tests (never the network): see tests/fakes/loopback.py."""

from .loopback import (
    FakeBraintrust,
    FakeModelServer,
    Fault,
    LoopbackHTTPServer,
    LoopbackServer,
    Recorded,
    default_judge,
    record_pauses,
    stop_server,
)

__all__ = ["FakeBraintrust", "FakeModelServer", "Fault", "LoopbackHTTPServer", "LoopbackServer", "Recorded", "default_judge", "record_pauses", "stop_server"]
