"""Deprecated: `sparselayers.sparse_dense` moved to `sparselayers.layers.sparse_dense` in 0.2.0.

This alias is the new module itself; it warns on import and goes away in 0.3.0.
"""

import importlib
import sys
import warnings

warnings.warn("sparselayers.sparse_dense is deprecated: import sparselayers.layers.sparse_dense "
              "instead (the alias goes away in 0.3.0).", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("sparselayers.layers.sparse_dense")
