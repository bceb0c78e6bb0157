"""Deprecated: `sparselayers.weighted_conv` moved to `sparselayers.layers.weighted_conv` in 0.2.0.

This alias is the new module itself; it warns on import and goes away in 0.3.0.
"""

import importlib
import sys
import warnings

warnings.warn("sparselayers.weighted_conv is deprecated: import sparselayers.layers.weighted_conv "
              "instead (the alias goes away in 0.3.0).", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("sparselayers.layers.weighted_conv")
