"""Running one long computation at a time per widget, off the GUI thread.

A widget owns a :class:`JobControls` (Run and Cancel buttons, a progress bar and a
status line) and starts its work with :meth:`JobControls.start`, which runs a function
or a generator in a napari ``thread_worker`` thread. Generators yield progress or
partial results, which arrive on the GUI thread through the worker's ``yielded``
signal; the return value arrives through ``returned``. Cancel sets a
``threading.Event`` that the core functions check between batches or steps, so
a cancelled job ends normally with what it has done. Errors raised and warnings
issued in the job are shown as napari notifications. When the widget is closed during
a job (the viewer closed, which destroys it, or its dock's close button, which only
takes it out of the dock), the job is cancelled and what it still sends is dropped
(see :meth:`JobControls.while_open`).

superqt's generator worker (under napari's) takes a ``RuntimeError`` raised by the
generator for a sign that the worker was deleted: it neither reports it nor finishes.
Torch reports many errors as ``RuntimeError``, so generators are run through
:func:`reporting_runtime_errors`, which re-raises them as :class:`JobError`.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import threading
import warnings
import weakref
from collections.abc import Callable

import torch
from magicgui.widgets import Container, Label, ProgressBar, PushButton
from magicgui.widgets.bases import BaseValueWidget
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent, QObject, Qt, Signal
from qtpy.QtWidgets import QDockWidget

from .controls import wrapping_label

_LOG = logging.getLogger(__name__)

# superqt's workers catch warnings with warnings.catch_warnings(), which saves and
# restores process-wide state: when jobs overlap (A starts, B starts, A ends, B ends)
# the last one to end restores the handler of the first, a finished worker's. So the
# state before the first of a set of overlapping jobs is saved here and put back when
# the last of them has finished (both on the GUI thread).
_running_workers: set = set()
_warnings_before_jobs: list = []


def _job_started(worker) -> None:
    if not _running_workers:
        saved = warnings.catch_warnings()
        saved.__enter__()
        _warnings_before_jobs.append(saved)
    _running_workers.add(worker)


def _job_ended(worker) -> None:
    _running_workers.discard(worker)
    if not _running_workers and _warnings_before_jobs:
        _warnings_before_jobs.pop().__exit__(None, None, None)


class ProgressRelay(QObject):
    """Carries progress reports from a worker thread to the GUI thread.

    Create it on the GUI thread and pass :meth:`emit` as the callback of a core
    function that reports progress through a callback (e.g. ``training.train``);
    connected slots run on the GUI thread (queued Qt connection) and receive the
    callback's argument, or the tuple of its arguments when there are several.
    """

    report = Signal(object)

    def emit(self, *args) -> None:
        self.report.emit(args[0] if len(args) == 1 else args)


class _RemovalWatch(QObject):
    """Calls ``removed()`` when ``widget`` is taken out of its parent: napari's dock close
    button does that (``setParent(None)``) to the dock's widget, without destroying it."""

    def __init__(self, widget, removed: Callable):
        super().__init__(widget)
        self._removed = removed
        widget.installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Type.ParentChange and watched.parentWidget() is None:
            self._removed()
        return False


class JobError(Exception):
    """An error raised in a job (re-raised from a ``RuntimeError``, see the module notes)."""


def reporting_runtime_errors(generator_function: Callable) -> Callable:
    """Wrap a generator function so that a ``RuntimeError`` leaves it as a :class:`JobError`."""

    @functools.wraps(generator_function)
    def wrapper(*args, **kwargs):
        try:
            return (yield from generator_function(*args, **kwargs))
        except RuntimeError as exc:
            raise JobError(str(exc)) from exc

    return wrapper


@contextlib.contextmanager
def gpu_memory_hint():
    """Turn a CUDA out-of-memory error into an error message that says what to do."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as exc:
        raise JobError("out of GPU memory; lower the batch size or choose device 'cpu'") from exc


class JobControls(Container):
    """Run/Cancel buttons, a progress bar and a status line for one job at a time.

    Parameters
    ----------
    title
        Name of the job in messages (e.g. ``"Localization"``).
    run_text
        Label of the Run button.
    cancellable
        Show a Cancel button.
    show_progress
        Show a progress bar.
    """

    def __init__(self, title: str, run_text: str, cancellable: bool = True, show_progress: bool = True):
        self.title = title
        self.run_button = PushButton(text=run_text)
        self.cancel_button = PushButton(text="Cancel", enabled=False, visible=cancellable)
        self.progress = ProgressBar(value=0, min=0, max=1, visible=show_progress)
        self.status = wrapping_label(value="")
        buttons = Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False)
        buttons.margins = (0, 0, 0, 0)
        super().__init__(widgets=[buttons, self.progress, self.status], labels=False)
        self.margins = (0, 0, 0, 0)
        #: set by Cancel (and when the widget is closed); cleared when a job starts
        self.cancel_event = threading.Event()
        self.worker = None
        #: the exception that ended the last job, or None
        self.error: Exception | None = None
        #: True once the widget is closed (destroyed, or taken out of its dock)
        self.closed = False
        #: True once it is destroyed (napari closed): its viewer's layers are gone too
        self.destroyed = False
        #: the warnings of the running job shown so far (each is shown once per job: CEL0
        #: compare runs two methods on the same frames, which warned twice of the same)
        self._warnings_shown: set[str] = set()
        self._job_warnings = ProgressRelay()
        self._job_warnings.report.connect(self.while_open(self._warned))
        self.cancel_button.changed.connect(self.cancel)
        self.native.destroyed.connect(self._destroyed)
        self._watched_dock = None
        self._watched_window = None
        self._refused = False  # the status line shows why the inputs could not be run

    def clear_refusal_on_change(self, container: Container) -> None:
        """Clear the status line of a refusal when an input of ``container`` (the widget's
        fields, not a job's own controls or a label) changes: "open a stack first" stayed
        on the CEL0 widget after a stack was open (a review)."""
        for widget in container:
            if isinstance(widget, (JobControls, Label, PushButton)):  # a button's click is no input (Load
                continue  # ground truth ... cleared the refusal it had just shown: a review)
            if isinstance(widget, BaseValueWidget):  # fields, also those made of several (a file name and Browse)
                widget.changed.connect(self._input_changed)
            elif isinstance(widget, Container):
                self.clear_refusal_on_change(widget)

    def _input_changed(self, *_) -> None:
        if self._refused and not self.busy:
            self._refused = False
            self.status.value = ""

    def _destroyed(self, *_) -> None:
        self.destroyed = True
        self._closed()

    def _closed(self, *_) -> None:
        self.closed = True
        self.cancel_event.set()

    def _watch_dock(self) -> None:
        """Close (see :meth:`_closed`) when the widget holding this one leaves its dock, and
        count as destroyed when napari's window goes: a widget taken out of its dock before
        is not destroyed with it, and its run put its layers back into the closed viewer."""
        inner = self.native
        while inner.parentWidget() is not None and not isinstance(inner.parentWidget(), QDockWidget):
            inner = inner.parentWidget()
        if inner.parentWidget() is not None and inner is not self._watched_dock:
            self._watched_dock = inner
            _RemovalWatch(inner, self._closed)
        window = inner  # napari's main window: the topmost parent (window() is a floating dock's own)
        while window.parentWidget() is not None:
            window = window.parentWidget()
        if window is not self.native and (self._watched_window is None or self._watched_window() is not window):
            # weak both ways: neither may keep the other (and the viewer) alive
            self._watched_window = weakref.ref(window)
            job = weakref.ref(self)
            window.destroyed.connect(lambda *_: job() is not None and job()._destroyed())

    def while_open(self, slot: Callable) -> Callable:
        """``slot``, made to do nothing once the widget is closed: a job's signals
        (and progress reports) may still arrive then, and its widgets are gone."""

        def call(*args):
            if not self.closed:
                slot(*args)

        return call

    def while_alive(self, slot: Callable) -> Callable:
        """``slot``, made to do nothing once the widget is destroyed (napari closed, its
        layers gone): for what updates output layers, also after the panel was closed."""

        def call(*args):
            if not self.destroyed:
                slot(*args)

        return call

    @property
    def busy(self) -> bool:
        """True while a job runs."""
        return self.worker is not None

    def idle(self) -> bool:
        """True when no job runs; otherwise tell the user that this one is still running."""
        if self.busy:
            show_info(f"{self.title} is already running: wait for it to finish or cancel it")
            return False
        return True

    def start(self, func: Callable, *args, on_yield: Callable | None = None, on_return: Callable | None = None,
              on_finish: Callable | None = None, on_closed: Callable | None = None, **kwargs):
        """Run ``func(*args, cancel=<Event>, **kwargs)`` in a worker thread.

        ``on_yield(value)`` and ``on_return(value)`` receive what the job yields and
        returns; ``on_finish()`` runs last, also after an error (see :attr:`error`).
        These reach the widget only while it is open; when it was taken out of its dock
        during the job (which cancels it), ``on_closed()`` runs instead of ``on_finish``,
        for what outlives the widget: its output layers, a notification (an error is still
        shown then). Nothing runs once the widget is destroyed (napari closed: the layers
        went with the viewer).
        Returns the worker, or None (with a notification) when a job is already running.
        """
        if not self.idle():
            return None
        self._watch_dock()
        self.cancel_event.clear()
        self._warnings_shown.clear()
        if inspect.isgeneratorfunction(func):
            func = reporting_runtime_errors(func)
        worker = create_worker(func, *args, cancel=self.cancel_event, _start_thread=False, _ignore_errors=True,
                               **kwargs)
        if on_yield is not None:
            worker.yielded.connect(self.while_open(on_yield))
        if on_return is not None:
            worker.returned.connect(self.while_open(on_return))
        worker.errored.connect(self.while_alive(self._failed))  # also after the panel was closed
        worker.warned.connect(self._sort_warning, Qt.ConnectionType.DirectConnection)
        if on_finish is not None:  # before _finished: the job counts as running until its results are shown
            worker.finished.connect(self.while_open(on_finish))
        worker.finished.connect(self.while_open(self._finished))
        if on_closed is not None:
            worker.finished.connect(lambda: on_closed() if self.closed and not self.destroyed else None)
        worker.finished.connect(lambda: _job_ended(worker))  # also once the widget is gone
        # a panel closed during its job skips _finished: its job then counted as running for good (a review)
        worker.finished.connect(lambda: self._forget(worker))
        self.worker = worker
        self.error = None
        self._refused = False
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.progress.value = 0
        self.status.value = f"{self.title}: starting ..."
        _job_started(worker)
        worker.start()
        return worker

    def cancel(self, *_) -> None:
        """Ask the running job to stop after its current batch or step."""
        if self.busy and not self.cancel_event.is_set():
            self.cancel_event.set()
            self.status.value = f"{self.title}: cancelling after the current step ..."

    @property
    def cancelled(self) -> bool:
        """True when the current (or last) job was asked to stop."""
        return self.cancel_event.is_set()

    def report(self, done: int, total: int, text: str) -> None:
        """Show progress ``done``/``total`` and a status text."""
        self.progress.max = max(int(total), 1)
        self.progress.value = min(int(done), self.progress.max)
        self.status.value = text

    def refuse(self, text: str) -> None:
        """Report inputs that cannot be run: in the status line and as an error notification."""
        self.status.value = text
        self._refused = True
        show_error(text)

    def _failed(self, exc: Exception) -> None:
        """Say why the job failed (also when its panel was closed meanwhile: the
        notification is then all the user sees of it); the traceback goes to the log
        (napari's console, or the terminal napari was started from): a bug showed as one
        line, like a user's mistake, with nothing to report."""
        self.error = exc
        self.status.value = f"{self.title} failed: {exc}"
        _LOG.error("%s failed", self.title, exc_info=exc)
        show_error(self.status.value)

    def _sort_warning(self, args: tuple) -> None:
        """Runs in the thread that issued the warning. The worker catches the warnings of
        every thread while it runs: those of the GUI thread are shown as napari would
        show them, those of the job (sent to the GUI thread) under the job's title."""
        if threading.current_thread() is threading.main_thread():
            show_warning(str(args[0]))
        else:
            self._job_warnings.emit(args)

    def _warned(self, args: tuple) -> None:
        text = f"{self.title}: {args[0]}"
        if text not in self._warnings_shown:
            self._warnings_shown.add(text)
            show_warning(text)

    def _forget(self, worker) -> None:
        if self.worker is worker:
            self.worker = None

    def _finished(self) -> None:
        self.worker = None
        self.run_button.enabled = True
        self.cancel_button.enabled = False
