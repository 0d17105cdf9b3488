"""Bad input, fuzzed: plane names, instrument file names and indexes, the TIFF encoder, pipeline specs.

Bounded example counts in ``make test``; ``make fuzz`` (``HYPOTHESIS_PROFILE=fuzz``) runs the counts in
the second argument of :func:`examples`. ``EXAMPLES`` collects the counts for docs/reliability.md.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hcsfs.errors import PlaneNameError, PlateCollisionError, PlateFormatError, SpecError
from hcsfs.naming import PlaneKey, format_name, format_well, parse_name
from hcsfs.pipelines import default_registry
from hcsfs.pipelines.spec import parse_spec
from hcsfs.sources.imagexpress import ImageXpressSource, parse_ixm_name
from hcsfs.sources.phenix import PhenixSource
from hcsfs.tiff import encode_tiff, pixel_buffer, plan_tiff, read_range
from tests.torture.conftest import examples

REGISTRY = default_registry()
SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


def fuzz(bounded: int, longer: int):  # type: ignore[no-untyped-def]
    return settings(max_examples=examples(bounded, longer), deadline=None, suppress_health_check=SLOW)


# --- flat names ---------------------------------------------------------------------------------

indexes = st.one_of(st.integers(1, 10**6), st.from_regex(r"[a-z]{1,8}", fullmatch=True))
keys = st.builds(PlaneKey, well=st.builds(format_well, st.integers(1, 702), st.integers(1, 9_999)),
                 site=indexes, channel=indexes, z=indexes, t=indexes)


@fuzz(500, 50_000)
@given(keys)
def test_flat_names_round_trip(key: PlaneKey) -> None:
    assert parse_name(format_name(key)) == key


@fuzz(500, 50_000)
@given(st.one_of(st.text(max_size=60), keys.map(format_name).flatmap(
    lambda name: st.tuples(st.integers(0, len(name)), st.text(max_size=3)).map(
        lambda cut: name[: cut[0]] + cut[1] + name[cut[0] + 1 :]))))
def test_flat_name_parser_never_crashes_and_accepts_only_canonical_names(text: str) -> None:
    try:
        key = parse_name(text)
    except PlaneNameError:
        return
    assert format_name(key) == text


# --- MetaXpress names ---------------------------------------------------------------------------

_guid = st.uuids().map(lambda u: "{" + str(u).upper() + "}")
_ixm = st.builds(
    lambda prefix, row, col, site, wave, thumb, guid, ext: (
        f"{prefix}_{format_well(row, col)}" + (f"_s{site}" if site else "") + (f"_w{wave}" if wave else "")
        + ("_thumb" if thumb else "") + (guid or "") + ext),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_ -]{0,12}", fullmatch=True), st.integers(1, 32), st.integers(1, 48),
    st.one_of(st.none(), st.integers(1, 99)), st.one_of(st.none(), st.integers(1, 9)), st.booleans(),
    st.one_of(st.none(), _guid), st.sampled_from([".TIF", ".tif", ".tiff"]))


@fuzz(500, 50_000)
@given(st.one_of(st.text(max_size=80), _ixm, _ixm.map(lambda n: n[: len(n) // 2] + "_" + n[len(n) // 2 :])))
def test_metaxpress_parser_never_crashes(name: str) -> None:
    parsed = parse_ixm_name(name)
    assert parsed is None or (parsed.well and (parsed.site is None or parsed.site >= 0))


@fuzz(25, 1_000)
@given(st.lists(_ixm, min_size=1, max_size=12, unique_by=str.lower))
def test_metaxpress_folders_never_map_two_files_to_one_name(names: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        plate = Path(folder) / "plate"
        plate.mkdir()
        for name in names:
            (plate / name).write_bytes(b"II*\x00")
        try:
            source = ImageXpressSource(plate)
        except PlateCollisionError as exc:
            assert str(exc).count(".") >= 2  # the message names both files
            return
        except PlateFormatError:
            return
        planes = [n for n in names if (p := parse_ixm_name(n)) is not None and not p.thumb]
        keys = list(source.keys())
        assert len(keys) == len(set(keys))
        assert len(keys) <= len(planes)
        assert len(keys) + len(source.describe().skipped) >= len(planes)


# --- Harmony (Phenix) indexes --------------------------------------------------------------------

_image = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(0, 3), st.integers(0, 2),
                   st.integers(0, 2), st.integers(1, 3))


def _index(images: list[tuple[int, ...]]) -> str:
    body = "".join(
        f"<Image Version=\"1\"><id>{i}</id><URL>r{r:02d}c{c:02d}f{f:02d}p{p:02d}-ch{ch}t{t}-{i}.tiff</URL>"
        f"<Row>{r}</Row><Col>{c}</Col><FieldID>{f}</FieldID><PlaneID>{p}</PlaneID>"
        f"<TimepointID>{t}</TimepointID><ChannelID>{ch}</ChannelID></Image>"
        for i, (r, c, f, p, t, ch) in enumerate(images))
    return ('<?xml version="1.0" encoding="utf-8"?><EvaluationInputData Version="1" '
            'xmlns="http://www.perkinelmer.com/PEHH/HarmonyV5"><Plates><Plate><PlateID>x</PlateID>'
            f'</Plate></Plates><Images>{body}</Images></EvaluationInputData>')


@fuzz(25, 1_000)
@given(st.lists(_image, min_size=1, max_size=10), st.binary(max_size=40))
def test_phenix_indexes_never_map_two_files_to_one_name(images: list[tuple[int, ...]], junk: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "Images"
        root.mkdir()
        text = _index(images)
        for i, (r, c, f, p, t, ch) in enumerate(images):
            (root / f"r{r:02d}c{c:02d}f{f:02d}p{p:02d}-ch{ch}t{t}-{i}.tiff").write_bytes(b"II*\x00")
        (root / "Index.idx.xml").write_text(text)
        try:
            source = PhenixSource(root)
        except PlateCollisionError as exc:
            assert ".tiff" in str(exc)
        else:
            keys = list(source.keys())
            assert len(keys) == len(set(keys)) == len(images)
        (root / "Index.idx.xml").write_bytes(text.encode()[: len(text) // 2] + junk)  # damaged index
        try:
            PhenixSource(root)
        except (PlateFormatError, PlateCollisionError):
            pass


# --- the TIFF encoder ------------------------------------------------------------------------------

DTYPES = ["u1", "u2", "u4", "i1", "i2", "i4", "f4", "f8", ">u2", ">f4", "?"]


@fuzz(60, 3_000)
@given(shape=st.tuples(st.integers(1, 300), st.integers(1, 300)), dtype=st.sampled_from(DTYPES),
       pixel=st.one_of(st.none(), st.floats(1e-3, 1e3)), seed=st.integers(0, 2**32 - 1),
       ranges=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)), min_size=1, max_size=12))
def test_encoded_tiffs_decode_to_the_array_and_any_range_is_a_slice(  # type: ignore[no-untyped-def]
        shape, dtype, pixel, seed, ranges) -> None:
    rng = np.random.default_rng(seed)
    plane = (rng.random(shape) * 200).astype(np.dtype(dtype))
    whole = encode_tiff(plane, pixel)
    with tifffile.TiffFile(io.BytesIO(whole)) as tif:
        decoded = tif.asarray()
    np.testing.assert_array_equal(decoded, plane.astype(plane.dtype.newbyteorder("=")) if dtype != "?"
                                  else plane.astype(np.uint8))
    layout = plan_tiff(plane.shape, plane.dtype, pixel)
    assert layout.size == len(whole)
    pixels = pixel_buffer(layout, plane)
    for offset, size in ranges:
        offset %= len(whole) + 10
        assert bytes(read_range(layout, offset, size, pixels)) == whole[offset : offset + size]


# --- pipeline specs ----------------------------------------------------------------------------------

_scalar = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=15)
_json = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=25)
_funcs = st.sampled_from(sorted(REGISTRY.names()) + ["os.system", "__import__", "eval", ""])
_args = st.dictionaries(st.sampled_from(["sigma", "size", "radius", "low", "high", "nbins", "x", "min_size"]),
                        _json | st.sampled_from([1e12, -1, 10**9, [0] * 50, "1e12", float("nan")]),
                        max_size=3)
_steps = st.lists(st.fixed_dictionaries({"func": _funcs}, optional={
    "args": _args, "memory": st.sampled_from(["numpy", "torch", "cupy", "zz", 1]), "tables": _json}),
    max_size=4)
_specs = st.fixed_dictionaries({}, optional={
    "steps": _steps | _json, "select": _json | st.fixed_dictionaries({}, optional={
        "well": st.lists(st.text(max_size=5)), "channel": st.lists(st.integers(-2, 10**7))}),
    "group_by": st.lists(st.sampled_from(["well", "site", "channel", "z", "t", "x"]), max_size=6) | _json,
    "name": st.text(max_size=20) | st.sampled_from(["../x", "..", "/etc", "a/b", ".hcsfs", "A01_s001.tif"]),
    "device": _json, "output": st.sampled_from(["zarr", "tiff", "memory", "/tmp/x", "../x"]) | _json,
    "exec": _json})
_tags = st.sampled_from(["!!python/object/apply:os.system ['true']", "!!python/name:os.system",
                         "!!binary aGk=", "!!set {a}", "!!timestamp 2001-12-14", "&a [x]", "*a", "!!omap []"])
SPEC_EXAMPLES = examples(300, 10_000)


def _answer(filename: str, data: bytes) -> None:
    try:
        parse_spec(filename, data, REGISTRY)
    except SpecError as exc:
        assert exc.field and str(exc).startswith(exc.field)


@settings(max_examples=SPEC_EXAMPLES, deadline=None, suppress_health_check=SLOW)
@given(doc=_specs | _json, as_json=st.booleans())
def test_any_spec_document_is_accepted_or_rejected_naming_a_field(doc: object, as_json: bool) -> None:
    data = json.dumps(doc).encode() if as_json else yaml.safe_dump(doc).encode()
    _answer("fuzz.json" if as_json else "fuzz.yaml", data)


@settings(max_examples=SPEC_EXAMPLES, deadline=None, suppress_health_check=SLOW)
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
                      st.tuples(_tags, st.text(max_size=30)).map(
                          lambda t: f"steps: [{{func: {t[0]}}}]\n{t[1]}"),
                      st.integers(1, 400).map(lambda n: "[" * n + "]" * n),
                      st.integers(1, 400).map(
                          lambda n: "a:\n" + "".join(" " * i + "- b:\n" for i in range(n)))),
       extension=st.sampled_from(["yaml", "json", "yml"]))
def test_any_spec_text_is_rejected_naming_a_field_and_runs_nothing(text: str, extension: str) -> None:
    _answer(f"fuzz.{extension}", text.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize("tables", ["[[]]", "[{a: 1}]", "[1]", "[null]", "{a: 1}", "objects"])
def test_unhashable_or_odd_table_names_are_rejected_naming_the_field(tables: str) -> None:
    """Found by ``make fuzz``: ``tables: [[]]`` raised TypeError (unhashable list) instead of SpecError."""
    with pytest.raises(SpecError) as caught:
        parse_spec("a.yaml", f"steps: [{{func: label, tables: {tables}}}]\n".encode(), REGISTRY)
    assert caught.value.field.startswith("steps[0].tables")


@pytest.mark.parametrize("value", ["1e12", "1e308", "-1", "0", ".inf", ".nan", "[1, 2]", "'big'", "true",
                                   "99999999999999999999999999999", "{a: 1}", "null"])
@pytest.mark.parametrize("arg", ["gaussian_filter.sigma", "median_filter.size", "tophat.radius",
                                 "threshold_otsu.nbins", "binary_opening.radius", "clip.low",
                                 "rescale_intensity.high", "label.connectivity"])
def test_absurd_argument_values_are_rejected_or_bounded(arg: str, value: str) -> None:
    func, _, name = arg.partition(".")
    param = REGISTRY.get(func).param(name)
    assert param is not None
    data = f"steps: [{{func: {func}, args: {{{name}: {value}}}}}]\n".encode()
    try:
        spec = parse_spec("a.yaml", data, REGISTRY)
    except SpecError as exc:
        assert exc.field.startswith("steps[0].args")
        return
    got = spec.steps[0].kwargs[name]
    if isinstance(got, int | float) and not isinstance(got, bool):
        assert param.high is None or got <= param.high
        assert param.low is None or got >= param.low
