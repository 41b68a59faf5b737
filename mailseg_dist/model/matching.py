"""Which new centre continues which old one: the optimal one-to-one matching that keeps segment ids."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def matching(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """order[i] = index of the new centre that best continues old centre i (optimal one-to-one)."""
    cost = ((old[:, None, :] - new[None, :, :]) ** 2).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    order = np.empty(len(old), dtype=np.int64)
    order[rows] = cols
    return order
