"""Floats that do not depend on how the rows were partitioned.

Sums of the same rows grouped into other partitions differ in their last bits.
Values that steer the fit (scaler statistics, centres) and the reported
metrics are rounded to 12 significant digits, far below any meaningful
difference and far above that noise, so the same data and seed give the same
model, bit for bit, on any number of partitions or workers.
"""

from __future__ import annotations

import numpy as np

DIGITS = 12


def significant(values, digits: int = DIGITS) -> np.ndarray:
    """`values` (any shape) rounded to `digits` significant digits."""
    arr = np.asarray(values, dtype=np.float64)
    flat = [float(f"{v:.{digits}g}") for v in arr.ravel()]
    return np.array(flat, dtype=np.float64).reshape(arr.shape)
