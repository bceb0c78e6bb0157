"""Deprecated: `sparselayers.volume_io` moved to `sparselayers.mri.volume_io` in 0.2.0.

This alias is the new module itself; it warns on import and goes away in 0.3.0.
"""

import importlib
import sys
import warnings

warnings.warn("sparselayers.volume_io is deprecated: import sparselayers.mri.volume_io "
              "instead (the alias goes away in 0.3.0).", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("sparselayers.mri.volume_io")
