"""WorkerThreads: a worker's own few threads, thread t pinned to its core thread_cores[t].

The pool starts on first use (submit, map, run_on_each, tids): each thread pins itself with
_native.setaffinity(0, [core]) and takes the memory policy that the thread which made the pool
had, then waits on one task queue (blocking, no polling).  Without thread_cores (unbound mode)
nothing is pinned and the threads run wherever the process may.  Threads are daemons, so a
worker that forgets close() still exits.  concurrent.futures (30 ms of imports, logging among
them) is imported on first use, never when a rank merely imports this module.
"""

from __future__ import annotations

import os
import threading
import time
from queue import Empty, SimpleQueue

from .. import _native

START_TIMEOUT = 30.0  # seconds for every thread to pin itself and report back


class WorkerThreads:
    """A fixed pool of T threads; thread t runs on thread_cores[t] (or anywhere, unbound)."""

    def __init__(self, thread_cores=None, *, threads: int | None = None, name: str = "t2mpi-thread"):
        if thread_cores is None:
            if threads is None:
                raise ValueError("WorkerThreads: give thread_cores (pinned threads) or threads=T (unbound)")
            cores = None
            size = int(threads)
        else:
            cores = tuple(int(c) for c in thread_cores)
            size = len(cores)
            if threads is not None and threads != size:
                raise ValueError(f"WorkerThreads: threads={threads} but {size} thread_cores {list(cores)}")
        if size < 1:
            raise ValueError(f"WorkerThreads: needs at least one thread, got {size}")
        self._cores = cores
        self._size = size
        self._name = name
        self._policy = _native.get_mempolicy()  # what the pool's threads get, whoever starts them
        self._lock = threading.Lock()
        self._local = threading.local()
        self._tasks: SimpleQueue = SimpleQueue()
        self._threads: tuple[threading.Thread, ...] = ()
        self._tids: tuple[int, ...] = ()
        self._closed = False

    @classmethod
    def for_worker(cls, placement, *, bound: bool = True) -> WorkerThreads:
        """The pool of a worker's placement: thread t on placement.thread_cores[t]."""
        cores = placement.thread_cores
        return cls(cores if bound else None, threads=len(cores))

    # ---- what it is -------------------------------------------------------------------

    @property
    def cores(self) -> tuple[int, ...] | None:
        """Thread t's core, or None in unbound mode."""
        return self._cores

    @property
    def tids(self) -> tuple[int, ...]:
        """Thread t's kernel thread id (starts the pool)."""
        self._ensure_started()
        return self._tids

    def __len__(self) -> int:
        return self._size

    def index(self) -> int | None:
        """The calling thread's t when it is one of this pool's threads, else None."""
        return getattr(self._local, "index", None)

    # ---- work ---------------------------------------------------------------------------

    def submit(self, fn, *args, **kwargs):
        """Run fn(*args, **kwargs) on the next free thread; a concurrent.futures.Future."""
        self._ensure_started()
        from concurrent.futures import Future

        future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("WorkerThreads is closed: no more tasks")
            self._tasks.put((future, fn, args, kwargs))
        return future

    def map(self, fn, items, timeout: float | None = None) -> list:
        """[fn(item) for item in items], run on the pool; an error in fn is raised here, with
        its traceback from the pool thread, and the items not yet started are cancelled."""
        futures = [self.submit(fn, item) for item in items]
        try:
            return _results(futures, timeout)
        finally:
            for f in futures:
                f.cancel()

    def run_on_each(self, fn, timeout: float | None = None) -> list:
        """fn() once on every thread of the pool; thread t's result at [t].

        Each thread takes one task and waits at a barrier until all have theirs, so no thread
        takes two.  From inside the pool it would wait for itself: that is an error."""
        if self.index() is not None:
            raise RuntimeError("run_on_each from one of the pool's own threads would wait for itself")
        barrier = threading.Barrier(self._size)

        def once():
            barrier.wait(timeout)
            return self._local.index, fn()

        results = [None] * self._size
        for t, result in _results([self.submit(once) for _ in range(self._size)], timeout):
            results[t] = result
        return results

    # ---- life -----------------------------------------------------------------------------

    def close(self, timeout: float = 30.0) -> None:
        """Run the tasks already submitted, then end and join every thread (TimeoutError when
        a task is still running after `timeout` s)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = self._threads
            for _ in threads:
                self._tasks.put(None)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in threads if t.is_alive()]
        if alive:
            raise TimeoutError(f"WorkerThreads.close: {', '.join(alive)} still running a task after {timeout:g} s")

    def __enter__(self) -> WorkerThreads:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _ensure_started(self) -> None:
        if self._threads:
            return
        with self._lock:
            if self._closed:
                raise RuntimeError("WorkerThreads is closed: no more tasks")
            if not self._threads:
                self._start()

    def _start(self) -> None:
        hello: SimpleQueue = SimpleQueue()
        threads = [
            threading.Thread(target=self._serve, args=(t, hello), name=f"{self._name}-{t}", daemon=True)
            for t in range(self._size)
        ]
        for thread in threads:
            thread.start()
        tids: list[int | None] = [None] * self._size
        errors = []
        deadline = time.monotonic() + START_TIMEOUT
        try:
            for _ in threads:
                t, tid, error = hello.get(timeout=max(0.0, deadline - time.monotonic()))
                tids[t] = tid
                if error is not None:
                    errors.append(f"thread {t}: {error}")
        except Empty:
            errors.append(f"not every thread started within {START_TIMEOUT:g} s")
        if errors:
            for _ in threads:
                self._tasks.put(None)
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            self._closed = True
            raise OSError(f"WorkerThreads could not start its {self._size} threads: {'; '.join(errors)}")
        self._tids = tuple(tids)
        self._threads = tuple(threads)

    def _serve(self, t: int, hello: SimpleQueue) -> None:
        tid = _native.gettid()
        trouble = self._settle(t)
        if trouble:
            hello.put((t, tid, trouble))
            return
        self._local.index = t
        hello.put((t, tid, None))
        tasks = self._tasks
        while True:
            task = tasks.get()
            if task is None:
                return
            future, fn, args, kwargs = task
            del task
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:  # the caller gets it, with its traceback
                    future.set_exception(exc)
                    del exc
            del future, fn, args, kwargs

    def _settle(self, t: int) -> str | None:
        """Pin this thread to its core and give it the pool's memory policy; what went wrong."""
        if self._cores is not None:
            try:
                _native.setaffinity(0, [self._cores[t]])
            except OSError as exc:
                return f"cannot pin to CPU {self._cores[t]}: {os.strerror(exc.errno)}"
        mode, nodes = self._policy
        if _native.get_mempolicy() != self._policy:
            try:
                _native.set_mempolicy(mode, nodes)
            except (OSError, ValueError) as exc:
                return f"cannot take the memory policy {mode} on nodes {list(nodes)}: {exc}"
        return None


def _results(futures: list, timeout: float | None) -> list:
    deadline = None if timeout is None else time.monotonic() + timeout
    return [f.result(None if deadline is None else max(0.0, deadline - time.monotonic())) for f in futures]
