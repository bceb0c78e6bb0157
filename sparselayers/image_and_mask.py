"""Deprecated: `sparselayers.image_and_mask` moved to `sparselayers.layers.image_and_mask` in 0.2.0.

This alias is the new module itself; it warns on import and goes away in 0.3.0.
"""

import importlib
import sys
import warnings

warnings.warn("sparselayers.image_and_mask is deprecated: import sparselayers.layers.image_and_mask "
              "instead (the alias goes away in 0.3.0).", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("sparselayers.layers.image_and_mask")
