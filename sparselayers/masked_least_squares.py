"""Deprecated: `sparselayers.masked_least_squares` moved to
`sparselayers.layers.masked_least_squares` in 0.2.0.

This alias warns on import and goes away in 0.3.0. Unlike the other aliases it
is a module of its own, not the new one: ``sparselayers.masked_least_squares``
is also the top-level function, and importing this module for the first time
makes Python bind the module to that name. So the module is callable, as the
function (the one place in the package where a module is made callable, for
this one release).
"""

import sys
import types
import warnings

from sparselayers.layers.masked_least_squares import ABSOLUTE_FLOOR  # noqa: F401
from sparselayers.layers.masked_least_squares import RELATIVE_FLOOR  # noqa: F401
from sparselayers.layers.masked_least_squares import linear_algebra_dtype  # noqa: F401
from sparselayers.layers.masked_least_squares import masked_gram  # noqa: F401
from sparselayers.layers.masked_least_squares import masked_least_squares

warnings.warn("sparselayers.masked_least_squares is deprecated: import "
              "sparselayers.layers.masked_least_squares instead (the alias goes away in 0.3.0).",
              DeprecationWarning, stacklevel=2)


class _CallableAlias(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return masked_least_squares(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableAlias
