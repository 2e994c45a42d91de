"""Reference profiles: what "normal" looks like for one model version.

A profile is built once from training or validation data and holds, per feature:

- numeric: a bounded row sample (deterministic subsample above ``max_rows``; rows are kept
  whole so calibration can resample correlated features together), the same sample sorted
  per feature, quantile bin edges with the reference share of each bin, summary statistics
  and the missing rate;
- categorical: the category vocabulary (most frequent first), their frequencies and the
  missing rate;
- every column: its serial dependence (`detectors.dependence`), estimated from the rows in
  the order given (time order for a captured reference) before any subsampling;
- optionally, the reference performance: the first (prediction, label) pairs of the rows, in
  order, as raw values (numbers, text or booleans), from which a version's performance
  stream takes its reference instead of waiting for labelled traffic.

A content hash (SHA-256 over every stored array and the metadata) identifies the profile.
`to_bytes`/`from_bytes` use a versioned ``.npz`` container read with ``allow_pickle=False``;
a corrupt, truncated, tampered or unsupported payload raises `ProfileError` naming the
source and the problem. Format 1 (before dependence was stored) still loads: its dependence
is estimated from the stored sample. Format 3 is format 2 with the reference pairs (one JSON
document stored as bytes); a profile without pairs is written as format 2, so its id is the
one format 2 gave it. Reading and writing files is the caller's job: this package does no
I/O.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.dependence import Dependence, estimate_dependence
from detectors.dependence import notes as dependence_notes
from detectors.detection import FloatArray, IntArray
from detectors.npz import read_npz

FORMAT = "monitord-profile"
FORMAT_VERSION = 3
"""The newest format: a profile is written in the oldest one that holds it (`written_format`)."""
READABLE_VERSIONS = (1, 2, 3)
MISSING_CODE = -1
CATEGORY_CHARS = 256
"""Categorical values are compared by their first 256 characters (`category_text`): a fixed
rule rather than a setting, so that a profile and every daemon reading it agree, and so that
no single value, however long, costs more than this per row."""
_SUBSAMPLE_SEED = 0x5EED
MAX_DEPENDENCE_ROWS = 20_000
"""Consecutive rows (the first) from which a profile's serial dependence is estimated."""


class ProfileError(ValueError):
    """A profile could not be built or loaded; the message names the source and the fix."""


@dataclass(frozen=True, eq=False)
class ReferenceProfile:
    """Reference statistics for one model version (see the module docstring).

    Array shapes: ``n`` sampled rows, ``p`` numeric and ``c`` categorical features,
    ``b`` PSI bins.
    """

    model: str
    model_version: str
    numeric_names: tuple[str, ...]
    categorical_names: tuple[str, ...]
    n_rows: int
    numeric_rows: FloatArray  # (n, p) row-aligned sample, NaN where missing
    category_rows: IntArray  # (n, c) codes into `categories`, -1 where missing
    bin_edges: FloatArray  # (p, b + 1), edges[:, 0] = -inf, edges[:, -1] = +inf
    bin_fractions: FloatArray  # (p, b) share of non-missing reference values per bin
    numeric_min: FloatArray  # (p,)
    numeric_max: FloatArray  # (p,)
    numeric_mean: FloatArray  # (p,)
    numeric_std: FloatArray  # (p,)
    numeric_missing_rate: FloatArray  # (p,)
    categories: tuple[tuple[str, ...], ...]  # per categorical feature, most frequent first
    category_counts: tuple[IntArray, ...]  # per categorical feature, aligned with categories
    categorical_missing_rate: FloatArray  # (c,)
    dependence_inflation: FloatArray  # (p + c, len(dependence.GRID)), see `dependence`
    dependence_rows: int  # rows the dependence was estimated from
    # The reference's (prediction, label) pairs in row order, raw values; () if none.
    performance_pairs: tuple[tuple[Any, Any], ...] = ()
    content_hash: str = field(default="")

    def __post_init__(self) -> None:
        if not self.content_hash:
            object.__setattr__(self, "content_hash", _hash(self, written_format(self)))

    @property
    def profile_id(self) -> str:
        """Short stable identifier: the first 16 hex digits of the content hash."""
        return self.content_hash[:16]

    @cached_property
    def dependence(self) -> Dependence:
        """Serial dependence per column, numeric columns first, then categorical."""
        return Dependence(self.dependence_inflation, self.dependence_rows)

    @cached_property
    def notes(self) -> list[str]:
        """Warnings on the reference's serial dependence, per column (`dependence.notes`):
        too short to calibrate, short for its dependence, or a cycle as long as itself."""
        observed = self.n_rows * (
            1.0 - np.concatenate([self.numeric_missing_rate, self.categorical_missing_rate])
        )
        names = [*self.numeric_names, *self.categorical_names]
        return dependence_notes(self.dependence, names, observed)

    @cached_property
    def sorted_sample(self) -> FloatArray:
        """``(n, p)`` each column of the row sample sorted, NaN (missing) last."""
        return np.sort(self.numeric_rows, axis=0)

    @cached_property
    def sample_sizes(self) -> IntArray:
        """``(p,)`` number of non-missing sampled values per numeric feature."""
        return np.asarray((~np.isnan(self.numeric_rows)).sum(axis=0), dtype=np.int64)

    @cached_property
    def _category_index(self) -> tuple[dict[str, int], ...]:
        return tuple({name: i for i, name in enumerate(cats)} for cats in self.categories)

    @property
    def n_categories(self) -> IntArray:
        """``(c,)`` vocabulary size per categorical feature; code ``n_categories[j]`` is unseen."""
        return np.array([len(c) for c in self.categories], dtype=np.int64)

    def encode_categories(self, values: npt.NDArray[np.object_]) -> IntArray:
        """Map an ``(n_rows, c)`` object array of strings/None to integer codes.

        Missing (None) becomes -1, a category absent from the reference becomes
        ``n_categories[j]`` (the "unseen" code).
        """
        n_rows = values.shape[0]
        codes = np.empty((n_rows, len(self.categorical_names)), dtype=np.int64)
        for j, index in enumerate(self._category_index):
            unseen = len(index)
            column = values[:, j].tolist()
            # A dictionary lookup per value: no fixed-width copy as wide as the longest value.
            found = np.fromiter(map(index.get, column, repeat(unseen)), np.int64, n_rows)
            for i in np.flatnonzero(found == unseen).tolist():
                text = category_text(column[i])  # only unseen values pay for the rule
                found[i] = MISSING_CODE if text is None else index.get(text, unseen)
            codes[:, j] = found
        return codes

    def to_bytes(self) -> bytes:
        """Serialize to the versioned ``.npz`` container (no pickle)."""
        buffer = io.BytesIO()
        entries: dict[str, Any] = {
            **_arrays(self, written_format(self)),
            "meta": _meta_array(self),
        }
        # Uncompressed: sampled float values barely deflate (under a tenth), and deflating
        # them cost a daemon about 20 ms per captured reference. Both kinds load alike.
        np.savez(buffer, **entries)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<bytes>") -> ReferenceProfile:
        """Load a profile written by `to_bytes`; ``source`` names it in errors."""
        try:
            arrays = read_npz(data, source)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise ProfileError(
                f"{source}: not a readable monitord profile ({exc}); it may be truncated or "
                "corrupt. Rebuild it with `monitord reference build`."
            ) from exc
        if "meta" not in arrays:
            raise ProfileError(f"{source}: no metadata entry; not a monitord profile")
        try:
            meta = json.loads(bytes(arrays.pop("meta")).decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ProfileError(f"{source}: metadata is not valid JSON ({exc})") from exc
        if not isinstance(meta, dict):
            raise ProfileError(
                f"{source}: metadata is a JSON {type(meta).__name__}, not an object; not a "
                "monitord profile"
            )
        if meta.get("format") != FORMAT:
            raise ProfileError(f"{source}: format is {meta.get('format')!r}, not {FORMAT!r}")
        if meta.get("format_version") not in READABLE_VERSIONS:
            raise ProfileError(
                f"{source}: profile format version {meta.get('format_version')!r} is not "
                f"supported (this monitord reads versions {READABLE_VERSIONS}); rebuild it with "
                "`monitord reference build`."
            )
        try:
            profile = _from_parts(meta, arrays)
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"{source}: incomplete or inconsistent profile ({exc})") from exc
        version = int(meta["format_version"])
        computed = _hash(profile, version)
        if computed != meta["content_hash"]:
            raise ProfileError(
                f"{source}: content hash mismatch (stored {meta['content_hash'][:16]}, "
                f"computed {computed[:16]}); the file was modified after it was built"
            )
        return profile


def build_profile(
    model: str,
    model_version: str,
    numeric_names: Sequence[str],
    numeric: FloatArray,
    categorical_names: Sequence[str] = (),
    categorical: npt.NDArray[np.object_] | None = None,
    n_bins: int = 10,
    max_rows: int = 5000,
    max_categories: int = 1000,
    performance_pairs: Sequence[tuple[Any, Any]] = (),
) -> ReferenceProfile:
    """Build a profile from a reference sample.

    Args:
        numeric: ``(n_rows, p)`` float64, NaN where missing.
        categorical: ``(n_rows, c)`` object array of str, None where missing.
        n_bins: PSI bins per numeric feature (reference quantiles).
        max_rows: rows kept in the sample; above it a deterministic subsample is taken.
        max_categories: most frequent categories kept per feature; rarer ones count as unseen.
        performance_pairs: the reference's (prediction, label) pairs in row order: text,
            booleans or finite numbers; the first ``max_rows`` are kept (their order is
            their serial dependence).
    """
    pairs = _checked_pairs(performance_pairs)[:max_rows]
    numeric = np.asarray(numeric, dtype=np.float64)
    if numeric.ndim != 2 or numeric.shape[1] != len(numeric_names):
        raise ProfileError(
            f"numeric: expected shape (n_rows, {len(numeric_names)}), got {numeric.shape}"
        )
    n_rows = numeric.shape[0]
    if categorical is None:
        categorical = np.empty((n_rows, 0), dtype=object)
    if categorical.shape != (n_rows, len(categorical_names)):
        raise ProfileError(
            f"categorical: expected shape ({n_rows}, {len(categorical_names)}), "
            f"got {categorical.shape}"
        )
    if n_rows < 2:
        raise ProfileError(f"need at least 2 reference rows, got {n_rows}")
    if n_bins < 2:
        raise ProfileError(f"n_bins: must be at least 2, got {n_bins}")
    if max_rows < 2:
        raise ProfileError(f"max_rows: must be at least 2, got {max_rows}")
    numeric = np.where(np.isfinite(numeric), numeric, np.nan)
    observed = ~np.isnan(numeric)
    never_observed = np.flatnonzero(~observed.any(axis=0))
    if never_observed.size:
        empty = [numeric_names[int(j)] for j in never_observed]
        raise ProfileError(f"numeric features with no observed value: {empty}")

    quantiles = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    if numeric.shape[1] and observed.all():
        # The same values as nanquantile's, which goes column by column in Python.
        inner = np.quantile(numeric, quantiles, axis=0).T
    elif numeric.shape[1]:
        inner = np.nanquantile(numeric, quantiles, axis=0).T
    else:  # categorical features only
        inner = np.empty((0, n_bins - 1))
    p = numeric.shape[1]
    edges = np.empty((p, n_bins + 1))
    edges[:, 0], edges[:, -1] = -np.inf, np.inf
    edges[:, 1:-1] = inner
    bins = (numeric[:, :, None] > edges[None, :, 1:-1]).sum(axis=2)
    counts = np.zeros((p, n_bins))
    for_bins = np.where(observed, bins + np.arange(p) * n_bins, -1).ravel()
    counts.ravel()[:] = np.bincount(for_bins[for_bins >= 0], minlength=p * n_bins)
    fractions = counts / np.maximum(observed.sum(axis=0), 1)[:, None]

    categories, cat_counts, cat_missing = _category_vocab(categorical, max_categories)
    p_columns = p + len(categorical_names)
    profile_stub = ReferenceProfile(
        model=model,
        model_version=model_version,
        numeric_names=tuple(numeric_names),
        categorical_names=tuple(categorical_names),
        n_rows=n_rows,
        numeric_rows=np.empty((0, p)),
        category_rows=np.empty((0, len(categorical_names)), dtype=np.int64),
        bin_edges=edges,
        bin_fractions=fractions,
        numeric_min=np.nanmin(numeric, axis=0) if p else np.empty(0),
        numeric_max=np.nanmax(numeric, axis=0) if p else np.empty(0),
        numeric_mean=np.nanmean(numeric, axis=0) if p else np.empty(0),
        numeric_std=np.nanstd(numeric, axis=0) if p else np.empty(0),
        numeric_missing_rate=1.0 - observed.mean(axis=0),
        categories=categories,
        category_counts=cat_counts,
        categorical_missing_rate=cat_missing,
        dependence_inflation=np.ones((p_columns, 1)),
        dependence_rows=0,
        content_hash="-",
    )
    keep = _subsample(n_rows, max_rows)
    codes = profile_stub.encode_categories(categorical[keep])
    # Dependence is a property of consecutive rows: read before subsampling.
    in_order = slice(0, MAX_DEPENDENCE_ROWS)
    ordered_codes = (
        codes if keep.shape[0] == n_rows else profile_stub.encode_categories(categorical[in_order])
    )
    dependence = estimate_dependence(numeric[in_order], ordered_codes[in_order])
    return ReferenceProfile(
        **{
            **{f: getattr(profile_stub, f) for f in _FIELDS},
            "numeric_rows": np.ascontiguousarray(numeric[keep]),
            "category_rows": codes,
            "dependence_inflation": dependence.inflation,
            "dependence_rows": dependence.n_rows,
            "performance_pairs": pairs,
            "content_hash": "",
        }
    )


def _checked_pairs(pairs: Sequence[tuple[Any, Any]]) -> tuple[tuple[Any, Any], ...]:
    out = []
    for i, pair in enumerate(pairs):
        if len(pair) != 2 or not all(map(_is_raw_value, pair)):
            raise ProfileError(
                f"performance_pairs[{i}]: expected (prediction, label), each text, a boolean "
                f"or a finite number; got {pair!r:.200}"
            )
        out.append((pair[0], pair[1]))
    return tuple(out)


def _is_raw_value(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | bool | int)


_FIELDS = tuple(ReferenceProfile.__dataclass_fields__)
_ARRAY_FIELDS = (
    "numeric_rows",
    "category_rows",
    "bin_edges",
    "bin_fractions",
    "numeric_min",
    "numeric_max",
    "numeric_mean",
    "numeric_std",
    "numeric_missing_rate",
    "categorical_missing_rate",
    "dependence_inflation",
)


def _subsample(n_rows: int, max_rows: int) -> IntArray:
    if n_rows <= max_rows:
        return np.arange(n_rows)
    rng = np.random.default_rng(_SUBSAMPLE_SEED)
    return np.sort(rng.choice(n_rows, size=max_rows, replace=False))


def _category_vocab(
    categorical: npt.NDArray[np.object_], max_categories: int
) -> tuple[tuple[tuple[str, ...], ...], tuple[IntArray, ...], FloatArray]:
    vocab: list[tuple[str, ...]] = []
    counts: list[IntArray] = []
    missing = np.zeros(categorical.shape[1])
    for j in range(categorical.shape[1]):
        texts = [category_text(value) for value in categorical[:, j].tolist()]
        present = Counter(text for text in texts if text is not None)
        missing[j] = 1.0 - present.total() / max(len(texts), 1)
        # Most frequent first, ties by name.
        kept = sorted(present.items(), key=lambda item: (-item[1], item[0]))[:max_categories]
        vocab.append(tuple(name for name, _ in kept))
        counts.append(np.array([n for _, n in kept], dtype=np.int64))
    return tuple(vocab), tuple(counts), missing


def category_text(value: object) -> str | None:
    """The category a JSON value stands for, as profiles and the daemon compare it: text cut
    to `CATEGORY_CHARS`, booleans as ``"true"``/``"false"``, numbers as written; None for a
    missing value.

    >>> category_text(True), category_text(3), category_text(None), len(category_text("x" * 999))
    ('true', '3', None, 256)
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = value if isinstance(value, str) else str(value)
    return text[:CATEGORY_CHARS]


def written_format(profile: ReferenceProfile) -> int:
    """The format ``profile`` is written in: 3 with performance pairs, else 2."""
    return 3 if profile.performance_pairs else 2


def _meta(profile: ReferenceProfile, version: int = FORMAT_VERSION) -> dict[str, object]:
    meta: dict[str, object] = {
        "format": FORMAT,
        "format_version": version,
        "model": profile.model,
        "model_version": profile.model_version,
        "numeric_names": list(profile.numeric_names),
        "categorical_names": list(profile.categorical_names),
        "n_rows": profile.n_rows,
        "categories": [list(c) for c in profile.categories],
    }
    if version >= 2:
        meta["dependence_rows"] = profile.dependence_rows
    return meta


def _arrays(
    profile: ReferenceProfile, version: int = FORMAT_VERSION
) -> dict[str, npt.NDArray[np.generic]]:
    fields = _ARRAY_FIELDS if version >= 2 else _ARRAY_FIELDS[:-1]  # 1: no dependence
    arrays: dict[str, npt.NDArray[np.generic]] = {f: getattr(profile, f) for f in fields}
    for j, counts in enumerate(profile.category_counts):
        arrays[f"category_counts_{j}"] = counts
    if version >= 3 and profile.performance_pairs:
        arrays["performance_pairs"] = _pairs_array(profile.performance_pairs)
    return arrays


def _pairs_array(pairs: tuple[tuple[Any, Any], ...]) -> npt.NDArray[np.uint8]:
    """The pairs as one JSON document: raw values keep their type (text, number, boolean),
    and a document read back is written back byte for byte, so the hash verifies."""
    text = json.dumps([list(pair) for pair in pairs], separators=(",", ":"), allow_nan=False)
    return np.frombuffer(text.encode(), dtype=np.uint8)


def _pairs(array: npt.NDArray[np.generic]) -> tuple[tuple[Any, Any], ...]:
    pairs = json.loads(bytes(np.asarray(array, dtype=np.uint8)).decode())
    if not isinstance(pairs, list) or not all(
        isinstance(pair, list) and len(pair) == 2 for pair in pairs
    ):
        raise ValueError("performance_pairs is not a list of (prediction, label) pairs")
    return _checked_pairs([tuple(pair) for pair in pairs])


def _hash(profile: ReferenceProfile, version: int = FORMAT_VERSION) -> str:
    """SHA-256 over the metadata and arrays of format ``version`` (a format 1 profile keeps
    the hash, and so the profile id, it was built with)."""
    digest = hashlib.sha256(json.dumps(_meta(profile, version), sort_keys=True).encode())
    for name, array in sorted(_arrays(profile, version).items()):
        contiguous = np.ascontiguousarray(array)
        digest.update(f"{name}:{contiguous.dtype.str}:{contiguous.shape}".encode())
        digest.update(contiguous.tobytes())
    return digest.hexdigest()


def _meta_array(profile: ReferenceProfile) -> npt.NDArray[np.uint8]:
    # Written as the format that holds it, hashed as such: a profile read from format 1
    # keeps its old id in memory and gets a new one when written again. The notes follow
    # from the arrays (outside the hash), for whoever reads the file.
    version = written_format(profile)
    meta = {
        **_meta(profile, version),
        "content_hash": _hash(profile, version),
        "notes": profile.notes,
    }
    return np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)


def _from_parts(
    meta: dict[str, object], arrays: dict[str, npt.NDArray[np.generic]]
) -> ReferenceProfile:
    categories = tuple(tuple(str(s) for s in c) for c in meta["categories"])  # type: ignore[attr-defined]
    numeric_names = tuple(str(s) for s in meta["numeric_names"])  # type: ignore[attr-defined]
    categorical_names = tuple(str(s) for s in meta["categorical_names"])  # type: ignore[attr-defined]
    if len(categories) != len(categorical_names):
        raise ValueError("categories and categorical_names differ in length")
    rows = np.asarray(arrays["numeric_rows"], dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != len(numeric_names):
        raise ValueError(f"numeric_rows has shape {rows.shape}")
    codes = np.asarray(arrays["category_rows"], dtype=np.int64)
    # Only format 3 hashes the pairs: in an older file they would go unverified.
    with_pairs = meta["format_version"] == 3 and "performance_pairs" in arrays
    if "dependence_inflation" in arrays:  # format 2
        dependence = Dependence(
            np.asarray(arrays["dependence_inflation"], dtype=np.float64),
            int(meta["dependence_rows"]),  # type: ignore[call-overload]
        )
    else:  # format 1: the stored sample, in its original order
        dependence = estimate_dependence(rows, codes)
    return ReferenceProfile(
        model=str(meta["model"]),
        model_version=str(meta["model_version"]),
        numeric_names=numeric_names,
        categorical_names=categorical_names,
        n_rows=int(meta["n_rows"]),  # type: ignore[call-overload]
        numeric_rows=rows,
        category_rows=codes,
        bin_edges=np.asarray(arrays["bin_edges"], dtype=np.float64),
        bin_fractions=np.asarray(arrays["bin_fractions"], dtype=np.float64),
        numeric_min=np.asarray(arrays["numeric_min"], dtype=np.float64),
        numeric_max=np.asarray(arrays["numeric_max"], dtype=np.float64),
        numeric_mean=np.asarray(arrays["numeric_mean"], dtype=np.float64),
        numeric_std=np.asarray(arrays["numeric_std"], dtype=np.float64),
        numeric_missing_rate=np.asarray(arrays["numeric_missing_rate"], dtype=np.float64),
        categories=categories,
        category_counts=tuple(
            np.asarray(arrays[f"category_counts_{j}"], dtype=np.int64)
            for j in range(len(categories))
        ),
        categorical_missing_rate=np.asarray(arrays["categorical_missing_rate"], dtype=np.float64),
        dependence_inflation=dependence.inflation,
        dependence_rows=dependence.n_rows,
        performance_pairs=_pairs(arrays["performance_pairs"]) if with_pairs else (),
        content_hash=str(meta["content_hash"]),  # verified by the caller
    )


__all__ = [
    "CATEGORY_CHARS",
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_DEPENDENCE_ROWS",
    "MISSING_CODE",
    "READABLE_VERSIONS",
    "ProfileError",
    "ReferenceProfile",
    "build_profile",
    "category_text",
    "written_format",
]
