"""A memory-bounded LRU cache of loaded prefix interpreters, filled ahead of need in the background."""

import logging
import threading
import time
from collections import OrderedDict, deque

from partnner_tf.errors import PartnnerError

log = logging.getLogger(__name__)

#: Default memory budget for loaded prefixes (file + arena estimates), bytes.
DEFAULT_BUDGET_BYTES = 256 * 1024 * 1024


class PrefixCache:
    """Loaded prefixes by cut id, bounded by ``budget_bytes``, least recently used evicted first.

    ``get`` is for the frame path; ``prefetch`` queues loads for a single background thread so
    that a swap to a cut already prefetched costs nothing. ``pin`` keeps a cut loaded whatever
    the budget (the edge-only fallback must never wait for a load).

    Building an interpreter (``allocate_tensors``) holds the GIL for up to tens of milliseconds,
    which would stall a frame running meanwhile; so a background load first waits, at most
    ``idle_wait_s``, for the frame thread to set :attr:`idle` (it does while it waits for the
    cloud, with the GIL released), and the load then overlaps that wait instead of a frame.

    Args:
        paths: ``{cut_id: what loader takes}`` (a path, or a description of the file) for every
            prefix that may be loaded.
        loader: ``loader(paths[cut_id]) -> Prefix``.
        budget_bytes: memory budget; a single prefix larger than it is still loaded (alone).
        idle_wait_s: longest a background load waits for an idle window.
    """

    def __init__(self, paths, loader, budget_bytes=DEFAULT_BUDGET_BYTES, idle_wait_s=0.25):
        self._paths = dict(paths)
        self._loader = loader
        self.budget_bytes = int(budget_bytes)
        self._loaded = OrderedDict()  # cut -> Prefix, least recently used first
        self._pinned = set()
        self._loading = {}  # cut -> threading.Event set when the load ends
        self._errors = {}  # cut -> exception of its last background load
        self._queue = deque()
        self._cv = threading.Condition()
        self._closed = False
        self.idle = threading.Event()
        self.idle_wait_s = float(idle_wait_s)
        self.stats = {"hits": 0, "misses": 0, "waits": 0, "prefetched": 0, "evicted": 0}
        self._thread = threading.Thread(target=self._worker, name="prefix-prefetch", daemon=True)
        self._thread.start()

    @property
    def nbytes(self):
        return sum(p.nbytes for p in self._loaded.values())

    def is_ready(self, cut):
        with self._cv:
            return cut in self._loaded

    def loaded(self):
        """Cut ids loaded now, least recently used first."""
        with self._cv:
            return list(self._loaded)

    def pin(self, cut):
        """Load ``cut`` now if needed and never evict it."""
        prefix = self.get(cut)
        with self._cv:
            self._pinned.add(cut)
        return prefix

    def get(self, cut):
        """The prefix of ``cut``: from memory, from a background load in flight, or loaded now."""
        with self._cv:
            prefix = self._loaded.get(cut)
            if prefix is not None:
                self._loaded.move_to_end(cut)
                self.stats["hits"] += 1
                return prefix
            event = self._loading.get(cut)
        if event is not None:
            event.wait()
            with self._cv:
                self.stats["waits"] += 1
                prefix = self._loaded.get(cut)
                error = self._errors.pop(cut, None)
            if prefix is not None:
                return prefix
            if error is not None:
                raise error
        with self._cv:
            self.stats["misses"] += 1
        return self._load(cut)

    def prefetch(self, cuts):
        """Queue background loads of ``cuts`` (most likely first); loaded or queued ones are skipped."""
        with self._cv:
            queued = False
            for cut in cuts:
                if cut in self._paths and cut not in self._loaded and cut not in self._loading:
                    self._loading[cut] = threading.Event()
                    self._queue.append(cut)
                    queued = True
            if queued:  # (every frame asks: waking the loader for nothing costs the frame a thread switch)
                self._cv.notify()

    def fill(self, cuts, size_of):
        """Load ``cuts`` now, in order, while each fits in the budget beside what is loaded (its
        file's ``size_of(cut)`` bytes at least); stop at the first that does not. Returns the cuts
        loaded. For before the first frame: a load while frames run holds the GIL through its
        whole ``allocate_tensors`` (110-130 ms for a ResNet50 96x96 prefix on this host), and the
        frame waits that long for its cloud reply."""
        done = []
        for cut in cuts:
            with self._cv:
                if cut in self._loaded or cut in self._loading:
                    continue
            if self.nbytes + size_of(cut) > self.budget_bytes:
                break
            prefix = self._loader(self._paths[cut])
            with self._cv:
                if self.nbytes + prefix.nbytes > self.budget_bytes:
                    break  # bigger loaded than its file: it would evict one already here
                self._loaded[cut] = prefix
            done.append(cut)
        return done

    def drain(self, timeout_s=60.0):
        """Wait until no background load is queued or running; True if none is left."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._cv:
                events = list(self._loading.values())
            if not events:
                return True
            if not events[0].wait(max(deadline - time.monotonic(), 0.0)):
                return False

    def _load(self, cut):
        if cut not in self._paths:
            raise PartnnerError(f"no prefix for cut {cut}; prefixes exist for cuts {sorted(self._paths)}")
        prefix = self._loader(self._paths[cut])
        with self._cv:
            self._loaded[cut] = prefix
            self._loaded.move_to_end(cut)
            self._evict(keep=cut)
        return prefix

    def _evict(self, keep):
        total = self.nbytes
        for cut in list(self._loaded):
            if total <= self.budget_bytes:
                break
            if cut == keep or cut in self._pinned:
                continue
            total -= self._loaded.pop(cut).nbytes
            self.stats["evicted"] += 1
            log.debug("evicted prefix of cut %s (budget %d bytes)", cut, self.budget_bytes)

    def _worker(self):
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                cut = self._queue.popleft()
                event = self._loading[cut]
            try:
                self.idle.wait(self.idle_wait_s)
                self._load(cut)
                with self._cv:
                    self.stats["prefetched"] += 1
            except Exception as exc:  # reported to whoever waits for this cut
                log.warning("background load of cut %s failed: %s", cut, exc)
                with self._cv:
                    self._errors[cut] = exc
            finally:
                with self._cv:
                    self._loading.pop(cut, None)
                event.set()

    def close(self):
        """Stop the background loader and drop every prefix."""
        with self._cv:
            self._closed = True
            self._queue.clear()
            self._cv.notify_all()
        self._thread.join(timeout=30)
        with self._cv:
            for event in self._loading.values():
                event.set()
            self._loaded.clear()
            self._pinned.clear()
