import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from hypothesis import HealthCheck  # noqa: E402
from hypothesis import settings  # noqa: E402

# Property tests: reproducible (derandomised, no example database written to
# the clone) and bounded, so that they fit the default run's time budget.
settings.register_profile(
    "sparselayers", max_examples=25, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large],
)
settings.load_profile("sparselayers")

# Two logical CPU devices for the MirroredStrategy tests; this must happen
# before TensorFlow initialises its devices, hence at import of conftest.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _float32_policy():
    import keras

    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)  # deterministic weights and sampling
    yield
    keras.mixed_precision.set_global_policy("float32")
