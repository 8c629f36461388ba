"""Deadlines for registry requests: a per-read timeout, and an overall deadline a watchdog enforces.

A read timeout alone never ends a transfer that drips one byte just inside it, headers included (http.client reads
them a line at a time); the watchdog shuts the socket of any request past its deadline, and the reader then reports
the deadline, not a broken connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass

DEFAULT_TIMEOUT = 20.0
"""Seconds a connect or one read may take: a transfer that stalls this long fails."""
MIN_RATE = 1024 * 1024
"""Bytes per second below which a transfer is too slow: a request's deadline is timeout + declared size / MIN_RATE."""
MAX_RETRIES = 2


@dataclass(frozen=True)
class Limits:
    """How long and how much: the per-read timeout and the rate below which a request's deadline passes."""

    timeout: float = DEFAULT_TIMEOUT
    min_rate: float = MIN_RATE
    retries: int = MAX_RETRIES

    def deadline(self, declared: int) -> float:
        """Seconds a request declaring ``declared`` bytes (sent or expected) may take in all."""
        return self.timeout + declared / self.min_rate


class Watchdog:
    """Shuts down the socket of every request whose deadline passed (a drip of bytes never trips a read timeout)."""

    def __init__(self) -> None:
        self._active: dict[int, Guard] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._next = 0

    def watch(self, seconds: float) -> Guard:
        """Start the deadline of one request, ``seconds`` from now (its socket is set once connected)."""
        guard = Guard(time.monotonic() + seconds)
        with self._cond:
            self._next += 1
            guard.key = self._next
            self._active[guard.key] = guard
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="gapseal-registry-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
        return guard

    def release(self, guard: Guard) -> None:
        """The request is done: stop watching it."""
        with self._cond:
            self._active.pop(guard.key, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                for guard in self._active.values():
                    if guard.deadline <= now and not guard.fired:
                        guard.fire()
                waiting = [g.deadline for g in self._active.values() if not g.fired]
                self._cond.wait(timeout=max(0.01, min(min(waiting, default=now + 1.0) - now, 1.0)))


class Guard:
    """One request's deadline and its socket, which the watchdog shuts down when the deadline passes."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.key = 0
        self.sock: socket.socket | None = None
        self.fired = False

    def fire(self) -> None:
        """The deadline passed: shut the socket down, so a blocked read returns at once."""
        self.fired = True
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)


WATCHDOG = Watchdog()
