"""Scaling out: training on several workers, and imputing data larger than memory.

* `multi_worker`: `tf.distribute.MultiWorkerMirroredStrategy` with peer checks,
  per-worker backups and the Keras 3 workarounds for two-worker `fit`.
* `streaming`: datasets or iterators of ``(image, mask)`` batches in,
  generators of per-batch results out.

Used by `sparselayers.models` and `sparselayers.mri`; imports neither.
"""

from sparselayers.distribute import multi_worker
from sparselayers.distribute import streaming

__all__ = ["multi_worker", "streaming"]
