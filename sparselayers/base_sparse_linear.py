"""Deprecated: `sparselayers.base_sparse_linear` moved to `sparselayers.layers.base_sparse_linear` in 0.2.0.

This alias is the new module itself; it warns on import and goes away in 0.3.0.
"""

import importlib
import sys
import warnings

warnings.warn("sparselayers.base_sparse_linear is deprecated: import sparselayers.layers.base_sparse_linear "
              "instead (the alias goes away in 0.3.0).", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("sparselayers.layers.base_sparse_linear")
