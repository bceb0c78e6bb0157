"""Test helper: extra callbacks in every `keras.Model.fit` call of a block.

The workflow builds and fits its model inside `impute_slices`; a test that
needs to stop, count or poison that training adds callbacks this way.
"""

import contextlib

import keras


@contextlib.contextmanager
def fit_callbacks(first=(), last=()):
    """Within the block, `keras.Model.fit` runs `first`, its own callbacks, then `last`."""
    original_fit = keras.Model.fit

    def fit(self, *args, callbacks=None, **kwargs):
        callbacks = list(first) + list(callbacks or []) + list(last)
        return original_fit(self, *args, callbacks=callbacks, **kwargs)

    keras.Model.fit = fit
    try:
        yield
    finally:
        keras.Model.fit = original_fit
