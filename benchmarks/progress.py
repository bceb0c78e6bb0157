"""Progress lines for the benchmarks: one line per stage with the elapsed time."""

import time

STARTED = time.time()


def stage(text):
    """Prints ``[elapsed s] text`` (seconds since this module was imported) at once."""
    print(f"[{time.time() - STARTED:6.0f} s] {text}", flush=True)
