"""`CategoryBuckets`: every categorical feature's categories and "unseen" bucket laid out
flat, so counting a window of codes for all features is one `numpy.bincount`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from detectors.detection import FloatArray, IntArray

_ScalarT = TypeVar("_ScalarT", bound=np.generic)


@dataclass(frozen=True, eq=False)
class CategoryBuckets:
    """Flat layout of every categorical feature's buckets: its categories, then "unseen".

    Feature ``f`` with ``K_f`` reference categories owns the ``K_f + 1`` flat buckets
    ``offsets[f] .. offsets[f] + K_f``; the last is its unseen bucket. Built once per test so
    the hot path only adds offsets and calls `numpy.bincount`.
    """

    n_categories: IntArray  # (c,) K_f, also the unseen code
    offsets: IntArray  # (c,) first flat bucket of each feature
    sizes: IntArray  # (c,) K_f + 1
    reference_counts: FloatArray  # (T,) reference count per flat bucket, 0 for unseen
    reference_totals: FloatArray  # (c,) non-missing reference values per feature
    reference_shares: FloatArray  # (T,) reference_counts / its feature's total

    @classmethod
    def from_counts(cls, category_counts: Sequence[npt.NDArray[np.integer]]) -> CategoryBuckets:
        """Build from `ReferenceProfile.category_counts` (one count array per feature)."""
        counts = [np.asarray(c, dtype=np.float64) for c in category_counts]
        for f, c in enumerate(counts):
            if c.ndim != 1 or (c < 0).any():
                raise ValueError(
                    f"category_counts[{f}]: expected a 1-D array of non-negative counts, "
                    f"got shape {c.shape}"
                )
        n_categories = np.array([c.shape[0] for c in counts], dtype=np.int64)
        sizes = n_categories + 1
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        reference = np.zeros(int(sizes.sum()))
        if counts:
            # The i-th known category overall, of feature f, moves up by f: one unseen
            # bucket for each feature before it.
            features = np.repeat(np.arange(n_categories.shape[0]), n_categories)
            reference[np.arange(features.shape[0]) + features] = np.concatenate(counts)
        totals = np.array([c.sum() for c in counts], dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = reference / np.repeat(totals, sizes)
        return cls(
            n_categories=n_categories,
            offsets=offsets,
            sizes=sizes,
            reference_counts=reference,
            reference_totals=totals,
            reference_shares=shares,
        )

    @property
    def n_features(self) -> int:
        return int(self.n_categories.shape[0])

    def per_feature(self, values: FloatArray) -> FloatArray:
        """``(c,)`` sums of a ``(T,)`` per-bucket array over each feature's buckets."""
        if self.n_features == 0:
            return np.zeros(0)
        return np.asarray(np.add.reduceat(values, self.offsets))

    def spread(self, values: npt.NDArray[_ScalarT]) -> npt.NDArray[_ScalarT]:
        """``(T,)`` each feature's value repeated over its buckets."""
        return np.repeat(values, self.sizes)

    def window_counts(self, window_codes: npt.NDArray[np.integer]) -> tuple[IntArray, IntArray]:
        """``(T,)`` window values per flat bucket and ``(c,)`` non-missing values per feature.

        Codes at or above ``n_categories`` count as unseen; negative codes as missing.
        """
        codes = np.asarray(window_codes, dtype=np.int64)  # no copy for int64 codes
        observed = codes >= 0
        flat = np.minimum(codes, self.n_categories) + self.offsets
        counts = np.bincount(flat[observed], minlength=self.reference_counts.shape[0])
        return counts, observed.sum(axis=0)


__all__ = ["CategoryBuckets"]
