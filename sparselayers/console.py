"""What the command lines share: a quiet TensorFlow import and progress output.

Everything about TensorFlow's log output is decided here, in one place:

- Importing TensorFlow prints C++ log lines (oneDNN and CUDA notices, an absl
  warning) before its own logging settings are read, so
  ``TF_CPP_MIN_LOG_LEVEL`` cannot hide them. `import_tensorflow_quietly`
  imports TensorFlow, Keras and TensorFlow Probability with the process's
  standard error pointed at the null device for the duration of the import
  only; a failing import still raises, with its Python traceback. Importing
  `sparselayers` calls it, unless TensorFlow was already imported or
  ``SPARSELAYERS_TF_LOGS=1`` asks for TensorFlow's lines.
- The command lines also set ``TF_CPP_MIN_LOG_LEVEL=3`` (when the user has
  not set it) before that import, which hides the later lines ("failed call
  to cuInit" on machines without a GPU, oneDNN kernel notices). Python
  exceptions are unaffected.
- `interrupts_never_lost`: a Ctrl-C that lands while Python runs a finaliser
  (a weakref callback or ``__del__``, as in TensorFlow's garbage collection)
  would be printed as "Exception ignored ... Traceback" and lost, the command
  going on; a command installs this hook so that it ends it as any Ctrl-C.
  It also records that a Ctrl-C arrived (`interrupt_received`): one that lands
  while TensorFlow's C++ code runs Python callbacks can surface as another
  exception (``SystemError: ... bad argument to internal function``, as a CI
  run saw inside ``model.fit``), which the command then reports as the
  interruption it is rather than as a crash.
- `progress_verbosity` gives Keras' ``verbose``: a progress bar on a terminal,
  one line per epoch in a log file (Keras' bar would fill it with escape codes).

This module imports nothing heavy, so a command can parse its arguments (and
answer ``--help``) before TensorFlow is loaded.
"""

import _thread
import contextlib
import os
import signal
import sys
import threading

__all__ = ["quiet_command_line", "import_tensorflow_quietly", "progress_verbosity",
           "interrupts_never_lost", "interrupt_received", "COMMANDS", "running_a_command"]

# The package's console scripts (setup.cfg's entry points).
COMMANDS = ("sparselayers-impute-slices",)


def running_a_command():
    """True when this process is one of `COMMANDS`: the package's imports then
    wait for the command to parse its arguments (``--help`` stays fast)."""
    return bool(sys.argv) and os.path.basename(sys.argv[0]) in COMMANDS


def quiet_command_line():
    """For a command line's `main`, after argument parsing: hide TensorFlow's
    log lines (unless the user set ``TF_CPP_MIN_LOG_LEVEL``) and import it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import_tensorflow_quietly()


def interrupts_never_lost():
    """Installs a `sys.unraisablehook` that re-delivers an ignored Ctrl-C.

    Python runs a signal's handler between any two bytecodes; when that is
    inside a finaliser (a weakref callback, ``__del__``), the resulting
    `KeyboardInterrupt` cannot propagate: Python prints it as "Exception
    ignored in ..." with a traceback and goes on. The hook replaces that
    printout, for `KeyboardInterrupt` only, by a new SIGINT to the main thread
    (`_thread.interrupt_main`) sent from a timer thread a moment later: sent
    from the hook itself it would raise inside the hook, still in the
    finaliser. It then raises in the command's own code, whose ``except
    KeyboardInterrupt`` ends it (its ``finally`` clauses run, temporaries are
    removed). Other unraisable exceptions go to the hook that was there
    before.

    It also replaces Python's own SIGINT handler (when that is the one in
    place: an ignored SIGINT stays ignored, a caller's handler stays) by one
    that does the same, raising `KeyboardInterrupt`, after recording the
    signal for `interrupt_received`; the record starts empty at each call.
    Idempotent.
    """
    _record_interrupts()
    previous = sys.unraisablehook
    if getattr(previous, "_redelivers_interrupts", False):
        return

    def hook(unraisable):
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type,
                                                          KeyboardInterrupt):
            timer = threading.Timer(INTERRUPT_REDELIVERY_DELAY_S, _thread.interrupt_main)
            timer.daemon = True
            timer.start()
            return
        previous(unraisable)

    hook._redelivers_interrupts = True
    sys.unraisablehook = hook


# Long enough for the finaliser that swallowed a Ctrl-C to return, short to a user.
INTERRUPT_REDELIVERY_DELAY_S = 0.05

_interrupts = {"received": False}


def interrupt_received():
    """True when a SIGINT arrived since `interrupts_never_lost` was last called.

    Python raises `KeyboardInterrupt` from its SIGINT handler wherever the
    main thread runs Python code, also inside a callback that C code made;
    C code that does not check the callback's result then fails in its own
    way (a `SystemError`, a TensorFlow error) and the `KeyboardInterrupt` is
    gone. A command asks this to tell such an error from a real failure.
    """
    return _interrupts["received"]


def _record_interrupts():
    _interrupts["received"] = False
    if threading.current_thread() is not threading.main_thread():
        return   # only the main thread may set a signal handler
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return   # ignored, already ours, or the caller's own: left as it is
    signal.signal(signal.SIGINT, _record_then_raise)


def _record_then_raise(signum, frame):
    """Python's `signal.default_int_handler`, after a note that it ran."""
    _interrupts["received"] = True
    signal.default_int_handler(signum, frame)


def import_tensorflow_quietly():
    """Imports TensorFlow, Keras and TFP with their load-time log lines hidden."""
    if "tensorflow" in sys.modules or os.environ.get("SPARSELAYERS_TF_LOGS") == "1":
        _import_tensorflow()
        return
    with _standard_error_discarded():
        _import_tensorflow()


def _import_tensorflow():
    import keras  # noqa: F401
    import tensorflow  # noqa: F401
    import tensorflow_probability  # noqa: F401  (its tf_keras loads TensorFlow's logs again)


@contextlib.contextmanager
def _standard_error_discarded():
    """File descriptor 2 to the null device (C++ writes there, not to sys.stderr)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr (some notebooks)
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def progress_verbosity(quiet=False):
    """Keras' ``verbose``: 0 if `quiet`, 1 (a bar) on a terminal, else 2 (a line per epoch)."""
    if quiet:
        return 0
    return 1 if sys.stdout.isatty() else 2
