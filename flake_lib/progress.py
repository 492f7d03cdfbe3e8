"""Progress of long loops: one widget in JupyterLab, nothing in executed notebooks, one line in the terminal.

Every loop of ``flake_lib`` that can take more than a few seconds iterates through :func:`progress`:

- in JupyterLab (an interactive kernel) it is ``tqdm.auto``: one widget per loop, which ``ipywidgets``
  renders and which disappears when the loop ends (``leave=False``);
- under the notebook chain (``./run_all.sh``), which sets ``FLAKE_QUIET_PROGRESS=1`` for the kernels
  it starts, no bar is drawn, so the executed copies under ``results/<profile>/executed/`` hold the
  notebooks' results and not hundreds of bar refreshes;
- when ``FLAKE_PROGRESS_FILE`` names a file (the chain sets it too), the current status
  (``desc · n/total · elapsed, ETA · metrics``) is written there at most once a second; the chain reads
  it and shows it as one updating line in the terminal (:class:`StatusLine`).

``status(text)`` writes a free-form status line (a phase without a loop: "evaluating PM k=2");
``watch_notebook`` is what the chain wraps around each notebook.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterable

QUIET_ENV = "FLAKE_QUIET_PROGRESS"
FILE_ENV = "FLAKE_PROGRESS_FILE"
#: Under the chain: the file a notebook's running log goes to (beside its executed copy), not its cells.
LOG_ENV = "FLAKE_LOG_FILE"
#: Seconds between two writes of the status file.
FILE_INTERVAL = 1.0
_last_write = [0.0]


def quiet() -> bool:
    """True when the kernel runs under the chain (papermill): no progress bars in the outputs."""
    return os.environ.get(QUIET_ENV, "").strip().lower() not in ("", "0", "false", "no")


def format_seconds(seconds: float | None) -> str:
    """``75.2`` → ``"1:15"``, ``3725`` → ``"1:02:05"``; ``None`` or not finite → ``"?"``."""
    if seconds is None or not seconds == seconds or seconds in (float("inf"), float("-inf")):
        return "?"
    seconds = int(round(max(0.0, seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def log_line(text: str) -> None:
    """One line of a long computation's running log (a training epoch's metrics): appended to
    ``$FLAKE_LOG_FILE`` when the chain set it (the executed notebook keeps its results, the log sits
    beside it), printed otherwise."""
    path = os.environ.get(LOG_ENV)
    if not path:
        print(text, flush=True)
        return
    try:
        with open(path, "a") as handle:
            handle.write(text.rstrip("\n") + "\n")
    except OSError:
        print(text, flush=True)


def status(text: str, force: bool = False) -> bool:
    """Write ``text`` as the current status to ``$FLAKE_PROGRESS_FILE`` (atomically), at most once per
    :data:`FILE_INTERVAL` unless ``force``. Returns whether it was written."""
    path = os.environ.get(FILE_ENV)
    now = time.monotonic()
    if not path or (not force and now - _last_write[0] < FILE_INTERVAL):
        return False
    _last_write[0] = now
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as handle:
            handle.write(" ".join(str(text).split()))
        os.replace(tmp, path)
    except OSError:  # the status line is a courtesy: never let it break a computation
        return False
    return True


class Progress:
    """An iterable with a progress bar (``tqdm.auto``, unless quiet) and a status line (see module)."""

    def __init__(self, iterable: Iterable | None = None, desc: str = "", total: int | None = None, *,
                 enabled: bool = True, leave: bool = False, mininterval: float = 1.0, **tqdm_kwargs):
        from tqdm.auto import tqdm

        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.desc, self.total, self.enabled = iterable, desc, total, enabled
        self.n, self.postfix, self.started, self.finished = 0, {}, time.monotonic(), False
        self.bar = tqdm(iterable, desc=desc, total=total, leave=leave, mininterval=mininterval,
                        disable=not enabled or quiet(), **tqdm_kwargs)

    def __iter__(self):
        source = self.iterable if self.bar.disable else self.bar
        for item in source:
            yield item
            self.n += 1
            self._publish()
        self.finished = True
        self._publish(force=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        self.bar.update(n)
        self._publish()

    def set_postfix(self, refresh: bool = False, **values) -> None:
        """Metrics shown after the bar and in the status line, e.g. ``loss="0.1234"``."""
        self.postfix.update(values)
        self.bar.set_postfix(self.postfix, refresh=refresh)

    def close(self) -> None:
        self.bar.close()

    def line(self) -> str:
        """``desc · n/total (p %) · elapsed, ETA · k=v ...`` (the status line); ``desc · n done in t``
        once the loop has ended."""
        elapsed = time.monotonic() - self.started
        parts = [self.desc] if self.desc else []
        if self.finished:
            parts.append(f"{self.n} done in {format_seconds(elapsed)}")
        elif self.total:
            rate = self.n / elapsed if elapsed > 0 else 0.0
            eta = (self.total - self.n) / rate if rate > 0 else None
            parts.append(f"{self.n}/{self.total} ({100 * self.n / self.total:.0f} %)")
            parts.append(f"{format_seconds(elapsed)} elapsed, {format_seconds(eta)} left")
        else:
            parts.append(f"{self.n} done, {format_seconds(elapsed)} elapsed")
        if self.postfix:
            parts.append(" ".join(f"{k}={v}" for k, v in self.postfix.items()))
        return " · ".join(parts)

    def _publish(self, force: bool = False) -> None:
        if self.enabled and os.environ.get(FILE_ENV):
            status(self.line(), force=force)


def progress(iterable: Iterable | None = None, desc: str = "", total: int | None = None, *,
             enabled: bool = True, **kwargs) -> Progress:
    """``for x in progress(items, desc="train F 3/7"):`` — a bar in JupyterLab, quiet under the chain,
    the status line in ``$FLAKE_PROGRESS_FILE``. ``enabled=False`` turns all three off."""
    return Progress(iterable, desc, total, enabled=enabled, **kwargs)


class Plan:
    """Progress of work planned in blocks of runs whose length is known beforehand (the latency
    experiment's open-loop runs): ``plan.block("Table I", runs=25)``, then ``plan.run(label, seconds)``
    before each run and ``plan.tick(done, total)`` during it. Writes the status line (block, run i/N of
    the block, what runs, its progress, elapsed and an ETA) and, with ``log``, one line per block.

    The ETA is the planned seconds still to run times the ratio of wall-clock to planned seconds so far
    (start-up, settling and drains make a run last longer than its arrivals).
    """

    def __init__(self, planned_s: dict[str, float], log=None):
        self.planned = {name: float(s) for name, s in planned_s.items()}
        self.log = log
        self.started = time.monotonic()
        self.done_s = 0.0  # planned seconds of the runs finished
        self.name, self.runs, self.index, self.label, self.seconds = "", 0, 0, "", 0.0

    def block(self, name: str, runs: int) -> None:
        self.done_s, self.seconds = self.done_s + self.seconds, 0.0
        self.name, self.runs, self.index = name, int(runs), 0
        if self.log is not None:
            self.log(f"{name}: {runs} run(s); {self.eta_text()}")

    def run(self, label: str, seconds: float) -> None:
        """A run of ``seconds`` planned open-loop time starts."""
        self.done_s += self.seconds
        self.index, self.label, self.seconds = self.index + 1, label, float(seconds)
        self.tick(0, 0, force=True)

    def remaining_s(self) -> float | None:
        total = sum(self.planned.values())
        elapsed = time.monotonic() - self.started
        left = max(total - self.done_s, 0.0)
        return left * (elapsed / self.done_s) if self.done_s > 0 else None

    def eta_text(self) -> str:
        return (f"{format_seconds(time.monotonic() - self.started)} elapsed, "
                f"~{format_seconds(self.remaining_s())} left")

    def tick(self, done: int, total: int, force: bool = False) -> None:
        """During a run: ``done`` of ``total`` queries sent."""
        parts = [self.name, f"run {self.index}/{self.runs}" if self.runs else "", self.label,
                 f"{done:,}/{total:,} queries" if total else "", self.eta_text()]
        status(" · ".join(p for p in parts if p), force=force)


class StatusLine:
    """The chain's view of a running notebook: ``prefix`` + elapsed time + the kernel's status line.

    A background thread reads the status file every ``poll`` seconds; on a terminal (``tty``) it
    rewrites one line with ``\\r``, otherwise it prints a line every ``interval`` seconds when the
    status changed. ``stop()`` ends the thread and clears the terminal line."""

    def __init__(self, prefix: str, path: str | os.PathLike, stream=None, tty: bool | None = None,
                 interval: float = 30.0, poll: float = 0.5, width: int | None = None):
        self.prefix, self.path = prefix, str(path)
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval, self.poll = interval, poll
        if width is None:
            import shutil

            width = shutil.get_terminal_size((120, 24)).columns
        self.width = max(20, width - 1)
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flake-status-line", daemon=True)
        self._shown, self._printed_at, self._printed = 0, None, None

    def read(self) -> str:
        try:
            with open(self.path) as handle:
                return handle.read().strip()
        except OSError:
            return ""

    def text(self) -> str:
        current = self.read()
        elapsed = format_seconds(time.monotonic() - self.started)
        return f"{self.prefix} [{elapsed}]" + (f" {current}" if current else "")

    def start(self) -> StatusLine:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.tty and self._shown:
            self.stream.write("\r" + " " * self._shown + "\r")
            self.stream.flush()

    def __enter__(self) -> StatusLine:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            self.tick()

    def tick(self) -> None:
        """Show the current status once (called by the thread)."""
        text = self.text()
        if self.tty:
            text = text[: self.width]
            self.stream.write("\r" + text.ljust(self._shown))
            self.stream.flush()
            self._shown = len(text)
            return
        status_now = self.read()
        now = time.monotonic()
        due = self._printed_at is None or now - self._printed_at >= self.interval
        if due and status_now and status_now != self._printed:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._printed_at, self._printed = now, status_now


@contextlib.contextmanager
def watch_notebook(prefix: str, enabled: bool = True, stream=None, interval: float = 30.0):
    """Around one papermill execution (the chain): the kernel it starts draws no bars
    (``FLAKE_QUIET_PROGRESS=1``) and, when ``enabled``, writes its status to a temporary
    ``FLAKE_PROGRESS_FILE`` that a :class:`StatusLine` shows as ``prefix [elapsed] status``.
    The environment is restored afterwards."""
    import tempfile

    saved = {name: os.environ.get(name) for name in (QUIET_ENV, FILE_ENV)}
    os.environ[QUIET_ENV] = "1"
    os.environ.pop(FILE_ENV, None)
    with tempfile.TemporaryDirectory(prefix="flake-progress-") as folder:
        line = None
        if enabled:
            os.environ[FILE_ENV] = os.path.join(folder, "status.txt")
            line = StatusLine(prefix, os.environ[FILE_ENV], stream=stream, interval=interval).start()
        try:
            yield line
        finally:
            if line is not None:
                line.stop()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def papermill_options() -> dict:
    """Keyword arguments for ``papermill.execute_notebook`` that keep the executed copy and the terminal
    clean: no papermill cell bar (the status line replaces it), consecutive stream outputs of a cell
    merged into one (``coalesce_streams``), and the kernel reached over IPC sockets rather than
    unencrypted TCP (which ipykernel warns about on every start) where the socket path fits the
    operating system's limit (about 107 bytes)."""
    from jupyter_core.paths import jupyter_runtime_dir
    from traitlets.config import Config

    options = {"progress_bar": False, "coalesce_streams": True}
    # <runtime dir>/kernel-<uuid>-ipc-<n>: 54 characters after the folder
    if len(os.path.abspath(jupyter_runtime_dir())) + 54 < 100:
        options["config"] = Config({"KernelManager": {"transport": "ipc"}})
    return options
