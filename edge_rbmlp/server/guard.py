"""What keeps a hostile client within bounds (tests/test_hostile.py replays each attack):

* :class:`MemoryBudget`: the bytes one worker process may hold for decoding images and parsing JSON
  at once, shared by its request threads. A request reserves what its input will cost *before*
  decoding or parsing (an image: its decoded frame, from the size and mode in its header; JSON:
  from its length and the number of values
  :func:`check_json` counted); more than the whole budget is a 413, a budget
  busy with other requests for longer than the request's deadline a 503.
* :func:`check_json`: JSON nesting depth and container count bounded before ``json.loads``
  (a linear scan in numpy, in chunks: the quotes' running parity marks strings, then the brackets'
  running sum outside them).
* :class:`Deadline`: the per-request time limit, checked between the stages of a request
  (decode, preprocess, each element of a batch): 503 once it has passed.
* :class:`Activity`: the requests in flight and a heartbeat from a thread of the worker's own,
  in memory the supervisor shares (busy is not wedged: see workers.py), and the request to be
  recycled once the worker's resident memory grew past its bound.
* :func:`bound_malloc`: glibc's allocator set to give large blocks back to the system when they
  are freed (a fixed mmap threshold; :func:`trim` after a large request), so that one large
  request does not leave the worker large.
"""

from __future__ import annotations

import threading
import time
from typing import Optional

from werkzeug.exceptions import RequestEntityTooLarge

from .errors import ApiError

MIB = 1 << 20
# what json.loads makes, at most: a body's bytes (in strings), per value (a separator) a 24-byte
# float or a 49-byte str header and its 8-byte slot, per array or object 64 bytes and its slots
JSON_BYTES_PER_VALUE = 64
MAX_JSON_DEPTH = 32  # a [batch, h, w] tensor inside {"inputs": [{"data": ...}]} needs 6
MAX_JSON_CONTAINERS = 100_000  # a v2 [256, 28, 28] tensor is 7,425 lists
JSON_SCAN_CHUNK = 256 * 1024


def check_json(body: bytes, what: str = "JSON") -> int:
    """400 when ``body`` nests deeper than MAX_JSON_DEPTH or holds more than MAX_JSON_CONTAINERS
    arrays and objects, checked in linear time with a few arrays of ``len(body)`` bytes, before
    any Python object is made: escaped backslashes and quotes are dropped (``bytes.replace``),
    the quotes' running parity marks what is inside strings, and the brackets outside them give
    the depth. Returns the bytes ``json.loads(body)`` may make at most (see JSON_BYTES_PER_VALUE).
    Invalid JSON is left for ``json.loads`` to refuse."""
    import numpy as np

    if b"[" not in body and b"{" not in body:
        return len(body) + JSON_BYTES_PER_VALUE
    bare = body.replace(b"\\\\", b"").replace(b'\\"', b"") if b"\\" in body else body
    n_open = values = depth = 0
    parity = False
    for start in range(0, len(bare), JSON_SCAN_CHUNK):  # in chunks: a few MiB of temporaries at most
        codes = np.frombuffer(bare, np.uint8, count=min(JSON_SCAN_CHUNK, len(bare) - start), offset=start)
        inside = np.bitwise_xor.accumulate(codes == ord('"'))  # in a string (or at its opening quote)
        if parity:
            inside = ~inside
        parity = bool(inside[-1])
        outside = ~inside
        opens = ((codes == ord("[")) | (codes == ord("{"))) & outside
        n_open += int(np.count_nonzero(opens))
        if n_open > MAX_JSON_CONTAINERS:
            raise ApiError(400, f"{what} holds more than {MAX_JSON_CONTAINERS} arrays and objects (the limit)")
        brackets = opens[opens | (((codes == ord("]")) | (codes == ord("}"))) & outside)]  # True: [ {, False: ] }
        if brackets.size:
            running = depth + np.cumsum(np.where(brackets, 1, -1).astype(np.int32))
            if int(running.max()) > MAX_JSON_DEPTH:
                raise ApiError(400, f"{what} nests more than {MAX_JSON_DEPTH} levels deep (the limit)")
            depth = int(running[-1])
        values += int(np.count_nonzero(((codes == ord(",")) | (codes == ord(":"))) & outside))
    return len(body) + JSON_BYTES_PER_VALUE * (values + n_open + 1)


class CappedInput:
    """``wsgi.input`` of a body without Content-Length (chunked): reading past ``limit`` bytes
    raises 413 (werkzeug does not limit a stream the server marks ``wsgi.input_terminated``)."""

    __slots__ = ("stream", "left", "limit")

    def __init__(self, stream, limit: int):
        self.stream, self.left, self.limit = stream, limit, limit

    def _take(self, data: bytes) -> bytes:
        self.left -= len(data)
        # exactly at the limit: one more byte tells a body that fits from one that is cut off
        if self.left < 0 or (self.left == 0 and data and self.stream.read(1)):
            self.left = -1
            raise RequestEntityTooLarge(f"request body is larger than the {self.limit} byte limit")
        return data

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:  # read it all, but never hold more than the limit (+ one chunk)
            parts = []
            while True:
                data = self._take(self.stream.read(min(65536, self.left + 1)))
                if not data:
                    return b"".join(parts)
                parts.append(data)
        return self._take(self.stream.read(min(size, self.left + 1)))

    def readline(self, size: int = -1) -> bytes:
        return self._take(self.stream.readline(size) if size is not None and size >= 0 else self.stream.readline())

    def __iter__(self):
        while True:
            line = self.readline()
            if not line:
                return
            yield line


class MemoryBudget:
    """``total`` bytes shared by the threads of one process (see the module docstring)."""

    def __init__(self, total: int):
        self.total = int(total)
        self.free = int(total)
        self.cond = threading.Condition()
        self.peak_reserved = 0

    def reserve(self, nbytes: int, what: str, deadline: Optional["Deadline"] = None, held: int = 0) -> "Reservation":
        """A context manager holding ``nbytes`` of the budget while entered; ``held``: what the same
        request holds already (it cannot wait for itself)."""
        return Reservation(self, max(0, int(nbytes)), what, deadline, held)

    def _take(self, r: "Reservation") -> None:
        nbytes = r.nbytes
        if nbytes > self.total - r.held:
            also = f" (with the {r.held / MIB:.1f} MiB its JSON holds)" if r.held else ""
            raise ApiError(413, f"{r.what} needs {nbytes / MIB:.1f} MiB to decode{also}, more than the "
                                f"{self.total / MIB:.0f} MiB memory budget of a worker (limits.max_decode_bytes)")
        with self.cond:
            while self.free < nbytes:
                left = None if r.deadline is None else r.deadline.left()
                if left is not None and left <= 0:
                    raise ApiError(503, f"busy: other requests hold the worker's memory budget; retry {r.what} later",
                                   {"Retry-After": "1"})
                self.cond.wait(1.0 if left is None else min(1.0, left))
            self.free -= nbytes
            reserved = self.total - self.free
            if reserved > self.peak_reserved:
                self.peak_reserved = reserved

    def _give(self, nbytes: int) -> None:
        with self.cond:
            self.free += nbytes
            self.cond.notify_all()
        if nbytes >= 8 * MIB:
            trim()


class Reservation:
    """``with budget.reserve(...)``: what :meth:`MemoryBudget.reserve` returns (a plain class, not a
    generator: it is entered on every image and JSON request)."""

    __slots__ = ("budget", "nbytes", "what", "deadline", "held")

    def __init__(self, budget: MemoryBudget, nbytes: int, what: str, deadline, held: int):
        self.budget, self.nbytes, self.what, self.deadline, self.held = budget, nbytes, what, deadline, held

    def __enter__(self) -> "Reservation":
        self.budget._take(self)
        return self

    def __exit__(self, *exc) -> None:
        self.budget._give(self.nbytes)


# environ keys of one request (app.front gives back what it holds when the answer is made)
HELD = "edge_rbmlp.held"  # the bytes of the budget its JSON holds
RELEASE = "edge_rbmlp.release"  # the reservations to give back


def release_request_memory(environ) -> None:
    """What the request of ``environ`` still holds of the budget (its parsed JSON), given back."""
    held = environ.pop(RELEASE, None)
    if held:
        for r in reversed(held):
            r.__exit__(None, None, None)
    environ.pop(HELD, None)


class Deadline:
    """The time a request may take (``seconds`` from its start)."""

    __slots__ = ("end", "seconds")

    def __init__(self, seconds: float, start: Optional[float] = None):
        self.seconds = seconds
        self.end = (time.monotonic() if start is None else start) + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self, stage: str) -> None:
        if time.monotonic() > self.end:
            raise ApiError(503, f"the request took longer than the {self.seconds:g} s limit "
                                f"(limits.request_timeout_s) at {stage}; send a smaller input", {"Retry-After": "1"})


# -- the worker's activity, as the supervisor sees it ------------------------------------------------
# slots of the shared array (multiprocessing.Array("d", SLOTS) made by the supervisor)
HEARTBEAT, OLDEST_REQUEST, IN_FLIGHT, RECYCLE, RSS_MIB = range(5)
SLOTS = 5
HEARTBEAT_S = 1.0
RSS_CHECK_S = 0.5  # the resident memory is read after a request at most this often


class Activity:
    """Requests in flight of this process (the oldest one's start) and a heartbeat, written to
    ``shared`` (a ``multiprocessing.Array('d', SLOTS)``) when the supervisor gave one."""

    def __init__(self, shared=None, recycle_rss_bytes: Optional[int] = None):
        self.shared = shared
        self.recycle_rss_bytes = recycle_rss_bytes
        self.lock = threading.Lock()
        self.started = {}  # id -> monotonic start
        self.recycle_wanted = False
        self.rss_checked = 0.0
        self._stop = threading.Event()
        if shared is not None:
            shared[HEARTBEAT] = time.monotonic()
            threading.Thread(target=self._beat, name="edge-rbmlp-heartbeat", daemon=True).start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self.shared[HEARTBEAT] = time.monotonic()

    def stop(self) -> None:
        self._stop.set()

    def _publish(self) -> None:
        if self.shared is not None:
            self.shared[IN_FLIGHT] = len(self.started)
            self.shared[OLDEST_REQUEST] = min(self.started.values()) if self.started else 0.0

    def begin(self, key) -> float:
        now = time.monotonic()
        with self.lock:
            self.started[key] = now
            self._publish()
        return now

    def end(self, key) -> None:
        with self.lock:
            self.started.pop(key, None)
            self._publish()
        if self.recycle_rss_bytes and not self.recycle_wanted and time.monotonic() - self.rss_checked > RSS_CHECK_S:
            self.rss_checked = time.monotonic()
            from .metrics import memory_bytes

            rss, _ = memory_bytes()
            if rss is not None and rss > self.recycle_rss_bytes:
                trim()
                rss, _ = memory_bytes()
                if rss is not None and rss > self.recycle_rss_bytes:
                    import logging

                    logging.getLogger("edge_rbmlp.server").warning(
                        "resident memory %.0f MiB is above the %.0f MiB bound: asking to be recycled", rss / MIB,
                        self.recycle_rss_bytes / MIB)
                    self.recycle_wanted = True
                    if self.shared is not None:
                        self.shared[RSS_MIB] = rss / MIB
                        self.shared[RECYCLE] = 1.0


# -- glibc's allocator ------------------------------------------------------------------------------
_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt, libc.malloc_trim  # noqa: B018 - glibc only
            _LIBC = libc
        except (OSError, AttributeError):
            _LIBC = False
    return _LIBC or None


MMAP_THRESHOLD = 256 * 1024


def bound_malloc() -> bool:
    """Blocks of MMAP_THRESHOLD and more are mmap'd (so returned to the system when freed): glibc's
    threshold otherwise rises to the largest block freed, and the heap keeps what a large request
    used. False where the C library is not glibc."""
    libc = _libc()
    if libc is None:
        return False
    M_MMAP_THRESHOLD = -3
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def trim() -> None:
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


PER_THREAD_BYTES = 24 * MIB  # a request's own body, its copies, the reduced frame and strips
SERVER_BYTES = 16 * MIB  # the HTTP server's buffers and threads once it serves (granian: Rust)


def worker_memory_bound(ready_rss: int, limits, threads: int) -> int:
    """The resident memory a worker stays under: what it had when its models were loaded, its
    memory budget, the HTTP server's own, and per request thread the memory outside the budget
    (PER_THREAD_BYTES with 4 MiB bodies; three times any larger body limit more).

    With the defaults a worker is ~67 MiB when ready: 67 + 48 + 16 + 24 = 155 MiB with 1 thread,
    179 MiB with 2 (device/config.toml's 2 workers x 2 threads: 2 x 179 + the supervisor's ~20 =
    378 MiB, under the unit's MemoryMax=384M)."""
    extra = max(0, limits.max_body_bytes - 4 * MIB) * 3
    return int(ready_rss + limits.max_decode_bytes + SERVER_BYTES + threads * (PER_THREAD_BYTES + extra))
