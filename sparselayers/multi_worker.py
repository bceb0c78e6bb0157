"""Deprecated: `sparselayers.multi_worker` moved to `sparselayers.distribute.multi_worker` in 0.2.0.

This alias is the new module itself; it warns on import and goes away in 0.3.0.
"""

import importlib
import sys
import warnings

warnings.warn("sparselayers.multi_worker is deprecated: import sparselayers.distribute.multi_worker "
              "instead (the alias goes away in 0.3.0).", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("sparselayers.distribute.multi_worker")
