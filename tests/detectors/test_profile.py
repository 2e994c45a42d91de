from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence

import numpy as np
import pytest

from detectors.dependence import GRID
from detectors.profile import (
    FORMAT_VERSION,
    ProfileError,
    ReferenceProfile,
    _hash,
    build_profile,
)


def _profile(n: int = 3000, max_rows: int = 5000) -> ReferenceProfile:
    rng = np.random.default_rng(2)
    numeric = rng.normal(size=(n, 3))
    numeric[::10, 1] = np.nan
    numeric[5, 2] = np.inf  # non-finite counts as missing
    cats = rng.choice(np.array(["a", "b", "c"], dtype=object), size=(n, 1), p=[0.6, 0.3, 0.1])
    cats[::20, 0] = None
    return build_profile("m", "7", ["x", "y", "z"], numeric, ["c"], cats, max_rows=max_rows)


def test_statistics_match_numpy() -> None:
    rng = np.random.default_rng(2)
    numeric = rng.normal(size=(3000, 3))
    numeric[::10, 1] = np.nan
    profile = _profile()
    assert profile.numeric_missing_rate.tolist() == pytest.approx([0.0, 0.1, 1 / 3000])
    assert profile.numeric_mean[0] == pytest.approx(numeric[:, 0].mean())
    assert profile.numeric_max[1] == np.nanmax(numeric[:, 1])
    assert profile.categories == (("a", "b", "c"),)
    assert profile.categorical_missing_rate[0] == pytest.approx(0.05)
    assert profile.bin_edges.shape == (3, 11)
    assert profile.bin_fractions.sum(axis=1) == pytest.approx(np.ones(3))
    # Quantile bins hold a tenth of the reference each.
    assert np.abs(profile.bin_fractions[0] - 0.1).max() < 1e-3


def test_sorted_sample_is_per_feature_with_missing_last() -> None:
    profile = _profile()
    sample = profile.sorted_sample
    assert profile.sample_sizes.tolist() == [3000, 2700, 2999]
    assert np.all(np.diff(sample[:2700, 1]) >= 0)
    assert np.isnan(sample[2700:, 1]).all()


def test_subsample_is_deterministic_and_bounded() -> None:
    a, b = _profile(n=8000, max_rows=1000), _profile(n=8000, max_rows=1000)
    assert a.numeric_rows.shape == (1000, 3)
    assert a.content_hash == b.content_hash
    assert a.n_rows == 8000


def test_round_trip_keeps_content_and_hash() -> None:
    profile = _profile()
    loaded = ReferenceProfile.from_bytes(profile.to_bytes(), "p.npz")
    assert loaded.content_hash == profile.content_hash
    np.testing.assert_array_equal(loaded.numeric_rows, profile.numeric_rows)
    assert loaded.categories == profile.categories


def test_encode_categories_marks_missing_and_unseen() -> None:
    profile = _profile()
    codes = profile.encode_categories(np.array([["b"], [None], ["zz"], ["a"]], dtype=object))
    assert codes[:, 0].tolist() == [1, -1, 3, 0]


def _rewrite(data: bytes, change: dict[str, object] | None = None, drop: str = "") -> bytes:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        entries = {name: npz[name] for name in npz.files if name != drop}
    if change is not None:
        meta = json.loads(bytes(entries["meta"]).decode())
        meta.update(change)
        entries["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    out = io.BytesIO()
    np.savez(out, **entries)
    return out.getvalue()


def test_truncated_file_names_source() -> None:
    data = _profile().to_bytes()
    with pytest.raises(ProfileError, match=r"ref\.npz: not a readable monitord profile"):
        ReferenceProfile.from_bytes(data[: len(data) // 2], "ref.npz")


def test_tampered_content_is_detected() -> None:
    data = _profile().to_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        entries = {name: npz[name] for name in npz.files}
    entries["numeric_mean"] = entries["numeric_mean"] + 1.0
    out = io.BytesIO()
    np.savez(out, **entries)
    with pytest.raises(ProfileError, match="content hash mismatch"):
        ReferenceProfile.from_bytes(out.getvalue(), "ref.npz")


def test_older_format_version_is_refused_with_advice() -> None:
    data = _rewrite(_profile().to_bytes(), {"format_version": 0})
    with pytest.raises(ProfileError, match=r"format version 0 is not supported.*rebuild"):
        ReferenceProfile.from_bytes(data, "ref.npz")


def test_missing_array_is_reported() -> None:
    data = _rewrite(_profile().to_bytes(), drop="bin_edges")
    with pytest.raises(ProfileError, match="incomplete"):
        ReferenceProfile.from_bytes(data, "ref.npz")


def test_pickled_payload_is_refused() -> None:
    out = io.BytesIO()
    np.savez(out, meta=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(ProfileError, match=r"ref\.npz"):
        ReferenceProfile.from_bytes(out.getvalue(), "ref.npz")


def test_not_a_zip_at_all() -> None:
    with pytest.raises(ProfileError, match="not a readable"):
        ReferenceProfile.from_bytes(b"hello", "ref.npz")
    assert not zipfile.is_zipfile(io.BytesIO(b"hello"))


def test_bad_build_inputs_name_the_parameter() -> None:
    with pytest.raises(ProfileError, match="numeric: expected shape"):
        build_profile("m", "1", ["x"], np.zeros((10, 2)))
    with pytest.raises(ProfileError, match="n_bins"):
        build_profile("m", "1", ["x"], np.zeros((10, 1)), n_bins=1)
    with pytest.raises(ProfileError, match=r"no observed value: \[.x.\]"):
        build_profile("m", "1", ["x"], np.full((10, 1), np.nan))


def _dependent_profile() -> ReferenceProfile:
    """A profile whose dependence is not trivially 1: an AR(1) column and categories taken
    from another, with every row kept so the stored sample is the reference in time order."""
    rng = np.random.default_rng(9)
    shocks = rng.standard_normal((2000, 2))
    persistent = np.zeros((2000, 2))
    for t in range(1, 2000):
        persistent[t] = 0.9 * persistent[t - 1] + shocks[t]
    numeric = np.column_stack([persistent[:, 0], rng.standard_normal(2000)])
    numeric[rng.random(2000) < 0.1, 1] = np.nan
    cats = np.where(persistent[:, 1] > 0, "up", "down").astype(object)[:, None]
    return build_profile("m", "7", ["ar", "iid"], numeric, ["side"], cats, max_rows=5000)


def _as_format_1(profile: ReferenceProfile, tamper: bool = False) -> bytes:
    """``profile`` written as format 1 did: no dependence array or dependence_rows, and the
    content hash over the format 1 fields."""
    with np.load(io.BytesIO(profile.to_bytes()), allow_pickle=False) as npz:
        entries = {name: npz[name] for name in npz.files if name != "dependence_inflation"}
    meta = json.loads(bytes(entries["meta"]).decode())
    del meta["dependence_rows"]
    meta["format_version"] = 1
    meta["content_hash"] = _hash(profile, 1)
    if tamper:
        entries["numeric_max"] = entries["numeric_max"] + 1e-9
    entries["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    out = io.BytesIO()
    np.savez(out, **entries)
    return out.getvalue()


def test_format_2_stores_the_dependence() -> None:
    profile = _dependent_profile()
    with np.load(io.BytesIO(profile.to_bytes()), allow_pickle=False) as npz:
        meta = json.loads(bytes(npz["meta"]).decode())
        stored = npz["dependence_inflation"]
    assert meta["format_version"] == 2 < FORMAT_VERSION  # format 3 only with labels
    assert meta["dependence_rows"] == 2000
    assert stored.shape == (3, GRID.shape[0])
    assert float(stored[0, -1]) > 5.0  # the AR(1) column
    assert float(stored[1, -1]) < 1.2  # the independent one
    assert float(stored[2, -1]) > 5.0  # the categories of an AR(1)
    loaded = ReferenceProfile.from_bytes(profile.to_bytes(), "p.npz")
    np.testing.assert_array_equal(loaded.dependence.inflation, profile.dependence.inflation)
    assert loaded.dependence.n_rows == 2000


def test_format_1_loads_and_estimates_its_dependence_from_the_sample() -> None:
    profile = _dependent_profile()
    loaded = ReferenceProfile.from_bytes(_as_format_1(profile), "old.npz")
    # The id a format 1 profile was built with stays, though the current format hashes more.
    assert loaded.content_hash == _hash(profile, 1) != profile.content_hash
    assert loaded.profile_id == _hash(profile, 1)[:16]
    # Every row was kept in order, so the sample gives the estimate the build made.
    assert loaded.dependence.inflation.shape == profile.dependence.inflation.shape
    np.testing.assert_array_equal(loaded.dependence.inflation, profile.dependence.inflation)
    assert loaded.dependence.n_rows == profile.numeric_rows.shape[0]
    # Written again, it is a format 2 profile with the hash of format 2.
    again = ReferenceProfile.from_bytes(loaded.to_bytes(), "new.npz")
    assert again.content_hash == profile.content_hash


def test_format_1_subsample_gets_a_dependence_of_the_right_shape() -> None:
    profile = _profile(n=8000, max_rows=1000)  # sampled rows: the estimate is the sample's
    loaded = ReferenceProfile.from_bytes(_as_format_1(profile), "old.npz")
    assert loaded.dependence.inflation.shape == (4, GRID.shape[0])
    assert loaded.dependence.n_rows == 1000
    assert profile.dependence.n_rows == 8000


def test_tampered_format_1_fails_the_hash_check() -> None:
    profile = _dependent_profile()
    with pytest.raises(ProfileError, match=r"old\.npz: content hash mismatch"):
        ReferenceProfile.from_bytes(_as_format_1(profile, tamper=True), "old.npz")
    # A format 2 payload relabelled as format 1 is hashed as format 1, and fails too.
    relabelled = _rewrite(profile.to_bytes(), {"format_version": 1})
    with pytest.raises(ProfileError, match="content hash mismatch"):
        ReferenceProfile.from_bytes(relabelled, "old.npz")


def test_a_profile_of_categorical_features_only() -> None:
    """No numeric column (a model of categories, its prediction too) once failed to bin."""
    rng = np.random.default_rng(2)
    categorical = rng.choice(np.array(["a", "b", "c"], dtype=object), size=(300, 2))
    profile = build_profile("m", "1", [], np.empty((300, 0)), ["c1", "c2"], categorical)
    assert profile.bin_edges.shape == (0, 11)
    codes = profile.encode_categories(np.array([["a", "zz"], [None, "c"]], dtype=object))
    assert codes.tolist() == [
        [profile.categories[0].index("a"), 3],
        [-1, profile.categories[1].index("c")],
    ]


def _with_member(data: bytes, name: str, content: bytes) -> bytes:
    """The container ``data`` with member ``name`` replaced by raw ``content``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as old, zipfile.ZipFile(out, "w") as new:
        for info in old.infolist():
            new.writestr(info, content if info.filename == name else old.read(info))
    return out.getvalue()


def test_metadata_that_is_not_an_object_is_refused() -> None:
    listed = io.BytesIO()
    np.save(listed, np.frombuffer(b"[1, 2]", dtype=np.uint8))
    data = _with_member(_profile().to_bytes(), "meta.npy", listed.getvalue())
    with pytest.raises(ProfileError, match=r"ref\.npz: metadata is a JSON list, not an object"):
        ReferenceProfile.from_bytes(data, "ref.npz")


def test_a_header_claiming_64_gib_is_refused_before_allocating() -> None:
    header = io.BytesIO()
    shape = (8 * 1024**3,)  # float64: 64 GiB
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": shape}
    )
    member = header.getvalue() + bytes(64)
    data = _with_member(_profile().to_bytes(), "numeric_rows.npy", member)
    with pytest.raises(
        ProfileError,
        match=r"ref\.npz: numeric_rows\.npy: header claims shape \(8589934592,\) of float64 "
        r"\(64\.0 GiB\) but the member holds 64 bytes",
    ):
        ReferenceProfile.from_bytes(data, "ref.npz")


PAIRS = [
    (0.91, 1),
    (0.12, 0),
    ("cat", "dog"),
    (True, False),
    (3, 2.5),
    (1e-300, "\u00e9\U0001f600"),
]


def _with_pairs(
    pairs: Sequence[tuple[object, object]] = PAIRS, max_rows: int = 5000
) -> ReferenceProfile:
    rng = np.random.default_rng(2)
    return build_profile(
        "m", "7", ["x"], rng.normal(size=(300, 1)), max_rows=max_rows, performance_pairs=pairs
    )


def test_performance_pairs_are_stored_as_format_3_and_keep_their_types() -> None:
    profile = _with_pairs()
    data = profile.to_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        assert json.loads(bytes(npz["meta"]).decode())["format_version"] == 3
        assert npz["performance_pairs"].dtype == np.uint8  # one JSON document, no pickle
    loaded = ReferenceProfile.from_bytes(data, "p.npz")
    assert loaded.performance_pairs == tuple(PAIRS)
    assert [type(v) for pair in loaded.performance_pairs for v in pair] == [
        type(v) for pair in PAIRS for v in pair
    ]
    assert loaded.content_hash == profile.content_hash == _hash(profile, 3)
    assert ReferenceProfile.from_bytes(loaded.to_bytes(), "again.npz").content_hash == (
        profile.content_hash
    )
    # The pairs are content: the same features without them are another profile.
    assert _with_pairs([]).content_hash != profile.content_hash


def test_a_profile_without_pairs_keeps_the_id_format_2_gave_it() -> None:
    profile = _with_pairs([])
    assert profile.performance_pairs == ()
    assert profile.content_hash == _hash(profile, 2)
    loaded = ReferenceProfile.from_bytes(profile.to_bytes(), "p.npz")
    assert (loaded.performance_pairs, loaded.content_hash) == ((), profile.content_hash)


def test_tampered_pairs_fail_the_hash_check() -> None:
    data = _with_pairs().to_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        entries = {name: npz[name] for name in npz.files}
    text = bytes(entries["performance_pairs"]).decode().replace("[0.12,0]", "[0.12,1]")
    entries["performance_pairs"] = np.frombuffer(text.encode(), dtype=np.uint8)
    out = io.BytesIO()
    np.savez(out, **entries)
    with pytest.raises(ProfileError, match=r"p\.npz: content hash mismatch"):
        ReferenceProfile.from_bytes(out.getvalue(), "p.npz")
    # Pairs slipped into a format 2 file are not read: format 2 does not verify them.
    plain = _with_pairs([]).to_bytes()
    with np.load(io.BytesIO(plain), allow_pickle=False) as npz:
        entries = {name: npz[name] for name in npz.files}
    entries["performance_pairs"] = np.frombuffer(b"[[1,1]]", dtype=np.uint8)
    out = io.BytesIO()
    np.savez(out, **entries)
    assert ReferenceProfile.from_bytes(out.getvalue(), "p.npz").performance_pairs == ()


def test_pairs_that_are_not_pairs_of_values_are_refused() -> None:
    with pytest.raises(ProfileError, match=r"performance_pairs\[1\]: expected"):
        _with_pairs([(1, 1), (float("nan"), 1)])
    with pytest.raises(ProfileError, match=r"performance_pairs\[0\]: expected"):
        _with_pairs([(None, 1)])
    data = _with_pairs().to_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        entries = {name: npz[name] for name in npz.files}
    entries["performance_pairs"] = np.frombuffer(b'{"a": 1}', dtype=np.uint8)
    out = io.BytesIO()
    np.savez(out, **entries)
    with pytest.raises(ProfileError, match=r"incomplete or inconsistent.*performance_pairs"):
        ReferenceProfile.from_bytes(out.getvalue(), "p.npz")


def test_the_first_pairs_are_kept_in_order() -> None:
    pairs = [(i % 2, i % 3 == 0) for i in range(500)]
    assert _with_pairs(pairs, max_rows=100).performance_pairs == tuple(pairs[:100])
