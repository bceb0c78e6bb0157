"""Deprecated: `sparselayers.locally_connected_sparse` moved to `sparselayers.layers.locally_connected_sparse` in 0.2.0.

This alias is the new module itself; it warns on import and goes away in 0.3.0.
"""

import importlib
import sys
import warnings

warnings.warn("sparselayers.locally_connected_sparse is deprecated: import sparselayers.layers.locally_connected_sparse "
              "instead (the alias goes away in 0.3.0).", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("sparselayers.layers.locally_connected_sparse")
