"""Deprecated: `sparselayers.sparse_vae` moved to `sparselayers.models.sparse_vae` in 0.2.0.

This alias is the new module itself; it warns on import and goes away in 0.3.0.
"""

import importlib
import sys
import warnings

warnings.warn("sparselayers.sparse_vae is deprecated: import sparselayers.models.sparse_vae "
              "instead (the alias goes away in 0.3.0).", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("sparselayers.models.sparse_vae")
