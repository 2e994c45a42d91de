"""Synthetic model traffic for the demo and benchmarks: realistic-looking inference events
for two models, each batch drifted or not as asked. Seeded, so reproducible."""

from __future__ import annotations

import numpy as np
import orjson

COUNTRIES = np.array(["DE", "FR", "US", "GB", "NL", "ES"])
COUNTRY_P = np.array([0.3, 0.2, 0.2, 0.15, 0.1, 0.05])
DRIFTED_COUNTRY_P = np.array([0.1, 0.1, 0.5, 0.1, 0.1, 0.1])
PLANS = np.array(["basic", "plus", "pro"])


class TrafficGenerator:
    """Events for ``fraud-scorer`` (v7) and ``churn-model`` (v3); drifted: larger amounts and
    another country mix for fraud-scorer, more support calls and lower spend for churn-model."""

    def __init__(self, seed: int = 7, bad_every: int = 5_000) -> None:
        self._rng = np.random.default_rng(seed)
        self.bad_every = bad_every
        self.produced = {"fraud-scorer": 0, "churn-model": 0}
        self._count = 0

    def batch(self, model: str, n: int, drifted: bool = False) -> list[bytes]:
        """``n`` encoded events of ``model`` (a malformed one now and then, for the DLQ)."""
        self.produced[model] += n
        rows = self._fraud(n, drifted) if model == "fraud-scorer" else self._churn(n, drifted)
        out = []
        for row in rows:
            self._count += 1
            if self.bad_every and self._count % self.bad_every == 0:
                out.append(b'{"model": "fraud-scorer", "features": ')  # truncated JSON
            out.append(orjson.dumps(row))
        return out

    def _fraud(self, n: int, drifted: bool) -> list[dict[str, object]]:
        rng = self._rng
        amount = rng.lognormal(3.0 + (0.6 if drifted else 0.0), 1.0, n)
        age = rng.normal(41, 12, n).round()
        hour = rng.integers(0, 24, n)
        risk = rng.beta(2, 5, n)
        country = rng.choice(COUNTRIES, n, p=DRIFTED_COUNTRY_P if drifted else COUNTRY_P)
        score = 1 / (1 + np.exp(-(0.02 * amount - 3 + 2 * risk)))
        return self._events(
            "fraud-scorer",
            "7",
            {"amount": amount, "age": age, "hour": hour, "merchant_risk": risk, "country": country},
            score,
        )

    def _churn(self, n: int, drifted: bool) -> list[dict[str, object]]:
        rng = self._rng
        tenure = rng.exponential(24, n)
        spend = rng.normal(60 - (12 if drifted else 0), 15, n)
        calls = rng.poisson(3.0 if drifted else 1.0, n)
        plan = rng.choice(PLANS, n, p=[0.5, 0.3, 0.2])
        score = 1 / (1 + np.exp(-(0.4 * calls - 0.03 * tenure - 1)))
        return self._events(
            "churn-model",
            "3",
            {"tenure_months": tenure, "monthly_spend": spend, "support_calls": calls, "plan": plan},
            score,
        )

    def _events(
        self, model: str, version: str, columns: dict[str, np.ndarray], score: np.ndarray
    ) -> list[dict[str, object]]:
        """Events of ``model`` from column arrays (numbers stay numbers, strings strings)."""
        first = self.produced[model] - len(score)
        values = {name: column.tolist() for name, column in columns.items()}
        return [
            {
                "model": model,
                "model_version": version,
                "event_id": f"{model}-{first + i}",
                "features": {name: column[i] for name, column in values.items()},
                "prediction": prediction,
            }
            for i, prediction in enumerate(score.tolist())
        ]


__all__ = ["COUNTRIES", "COUNTRY_P", "DRIFTED_COUNTRY_P", "PLANS", "TrafficGenerator"]
