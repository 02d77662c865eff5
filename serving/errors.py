"""What serving raises for problems a caller can act on, and the bounded wait that raises it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class ModelBusy(TimeoutError):
    """The model did not become free within the time a request allows; the message says to try again."""


class ModelInterrupted(RuntimeError):
    """The app is stopping (`interrupt`): the batch in flight ended early and nothing more is generated."""


@contextmanager
def held(lock, wait_s: float | None) -> Iterator[None]:
    """Hold `lock` (the model's), waiting at most `wait_s` seconds for it (None: as long as it takes)."""
    if not lock.acquire(timeout=-1 if wait_s is None else wait_s):
        raise ModelBusy(f"The model was busy for {wait_s:.0f} s (sampling for labelers); try again in a moment.")
    try:
        yield
    finally:
        lock.release()
