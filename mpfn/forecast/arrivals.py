"""Probability that a model is requested in the next minute: a weighted logistic regression.

Fitted by Newton's method (numpy only) on feature rows with 0/1 labels; negative rows may be
subsampled and carry a weight (1 / sampling rate) so the probabilities stay calibrated.
The parameters are a plain list of floats, so a fit can be stored and reloaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))


@dataclass
class ArrivalModel:
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    l2: float = 1.0

    @property
    def fitted(self) -> bool:
        return self.weights.size > 0

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        iterations: int = 12,
    ) -> ArrivalModel:
        xb = np.hstack([x, np.ones((len(x), 1))])
        sw = np.ones(len(x)) if sample_weight is None else sample_weight
        w = self.weights if self.weights.size == xb.shape[1] else np.zeros(xb.shape[1])
        reg = self.l2 * np.eye(xb.shape[1])
        reg[-1, -1] = 1e-6

        def loss(v: np.ndarray) -> float:
            z = xb @ v
            return float(np.sum(sw * (np.logaddexp(0.0, z) - y * z)) + 0.5 * v @ reg @ v)

        current = loss(w)
        for _ in range(iterations):
            p = _sigmoid(xb @ w)
            grad = xb.T @ (sw * (p - y)) + reg @ w
            hess = (xb * (sw * p * (1 - p))[:, None]).T @ xb + reg
            step = np.linalg.solve(hess, grad)
            scale = 1.0
            while scale > 1e-4:  # backtracking keeps Newton from overshooting
                candidate = w - scale * step
                value = loss(candidate)
                if value <= current:
                    break
                scale /= 2
            else:
                break
            w, current = candidate, value
            if float(np.max(np.abs(scale * step))) < 1e-6:
                break
        self.weights = w
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        if not self.fitted:
            raise ValueError("arrival model is not fitted")
        return _sigmoid(x @ self.weights[:-1] + self.weights[-1])

    def to_list(self) -> list[float]:
        return [float(v) for v in self.weights]

    @classmethod
    def from_list(cls, values: list[float], l2: float = 1.0) -> ArrivalModel:
        return cls(np.asarray(values, dtype=float), l2)
