"""Spec parsing: a valid spec, at least 20 kinds of malformed or hostile spec, and a fuzz test."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hcsfs.errors import SpecError
from hcsfs.memory import MemoryType
from hcsfs.pipelines import parse_spec
from hcsfs.pipelines.spec import MAX_SPEC_BYTES, check_run_name

NUCLEI = b"""select: {channel: [1]}
steps:
  - {func: gaussian_filter, memory: torch, args: {sigma: 2}}
  - {func: threshold_otsu}
  - {func: label, tables: [objects]}
"""


def test_the_issue_example(registry) -> None:
    spec = parse_spec("nuclei.yaml", NUCLEI, registry)
    assert spec.name == "nuclei"
    assert spec.select.channel == frozenset({1}) and spec.select.well is None
    assert spec.group_by == ("well", "site", "channel", "t") and spec.stacked_axis == "z"
    assert spec.device == "auto" and spec.output == "zarr"
    assert [s.func for s in spec.steps] == ["gaussian_filter", "threshold_otsu", "label"]
    assert spec.steps[0].memory is MemoryType.TORCH and spec.steps[0].kwargs == {"sigma": 2.0}
    assert spec.steps[1].memory is MemoryType.NUMPY and spec.steps[1].kwargs == {"nbins": 256}
    assert spec.steps[2].tables == ("objects",)


def test_json_and_explicit_fields(registry) -> None:
    doc = {"name": "run-1.b", "select": {"well": ["A01", "B03"], "z": 2},
           "group_by": ["well", "site", "channel", "z", "t"],
           "device": "cuda:1", "output": "tiff", "steps": [{"func": "clip", "args": {"low": 1, "high": 2.5}}]}
    spec = parse_spec("x.json", json.dumps(doc).encode(), registry)
    assert spec.name == "run-1.b" and spec.stacked_axis is None and spec.device == "cuda:1"
    assert spec.select.well == frozenset({"A01", "B03"}) and spec.select.z == frozenset({2})
    assert spec.steps[0].kwargs == {"low": 1.0, "high": 2.5}


def test_yaml_12_floats(registry) -> None:
    spec = parse_spec("x.yaml", b"steps: [{func: gaussian_filter, args: {sigma: 1e1}}]", registry)
    assert spec.steps[0].kwargs["sigma"] == 10.0


def _step(func: str, **fields: object) -> str:
    return json.dumps({"steps": [{"func": func, **fields}]})


CLIP = '"steps": [{"func": "clip"}]'
MALFORMED: list[tuple[str, str, bytes | str, str]] = [
    # (kind, filename, content, field named)
    ("unknown function", "a.yaml", _step("nope"), "steps[0].func"),
    ("import path as function", "a.yaml", _step("os.system"), "steps[0].func"),
    ("missing func", "a.yaml", '{"steps": [{"args": {}}]}', "steps[0].func"),
    ("unknown argument", "a.yaml", _step("gaussian_filter", args={"sigmax": 1}), "steps[0].args.sigmax"),
    ("wrong argument type", "a.yaml", _step("gaussian_filter", args={"sigma": "big"}), "steps[0].args.sigma"),
    ("boolean for a number", "a.yaml", _step("gaussian_filter", args={"sigma": True}), "steps[0].args.sigma"),
    ("absurd sigma", "a.yaml", "steps: [{func: gaussian_filter, args: {sigma: 1e12}}]",
     "steps[0].args.sigma"),
    ("negative radius", "a.yaml", _step("tophat", args={"radius": -3}), "steps[0].args.radius"),
    ("huge histogram", "a.yaml", _step("threshold_otsu", args={"nbins": 10**9}), "steps[0].args.nbins"),
    ("even median size", "a.yaml", _step("median_filter", args={"size": 4}), "steps[0].args.size"),
    ("nan argument", "a.yaml", "steps: [{func: clip, args: {low: .nan}}]", "steps[0].args.low"),
    ("low above high", "a.yaml", _step("clip", args={"low": 5, "high": 1}), "steps[0].args.high"),
    ("args not a mapping", "a.yaml", _step("clip", args=[1, 2]), "steps[0].args"),
    ("unknown step field", "a.yaml", _step("clip", code="import os"), "steps[0].code"),
    ("unknown top-level field", "a.yaml", '{' + CLIP + ', "exec": "rm -rf /"}', "exec"),
    ("bad memory type", "a.yaml", _step("clip", memory="opencl"), "steps[0].memory"),
    ("memory type without implementation", "a.yaml", _step("fill_holes", memory="torch"), "steps[0].memory"),
    ("unknown table", "a.yaml", _step("label", tables=["volumes"]), "steps[0].tables[0]"),
    ("table on a function without tables", "a.yaml", _step("clip", tables=["objects"]), "steps[0].tables[0]"),
    ("bad axis in group_by", "a.yaml", '{"group_by": ["well", "site", "colour"], ' + CLIP + '}',
     "group_by[2]"),
    ("group_by without site", "a.yaml", '{"group_by": ["well", "channel", "z", "t"], ' + CLIP + '}',
     "group_by"),
    ("group_by stacking two axes", "a.yaml", '{"group_by": ["well", "site", "t"], ' + CLIP + '}', "group_by"),
    ("bad selection axis", "a.yaml", '{"select": {"plate": [1]}, ' + CLIP + '}', "select.plate"),
    ("bad well in selection", "a.yaml", '{"select": {"well": ["A1"]}, ' + CLIP + '}', "select.well[0]"),
    ("zero index in selection", "a.yaml", '{"select": {"channel": [0]}, ' + CLIP + '}', "select.channel[0]"),
    ("empty selection", "a.yaml", '{"select": {"site": []}, ' + CLIP + '}', "select.site"),
    ("bad device", "a.yaml", '{"device": "tpu", ' + CLIP + '}', "device"),
    ("bad output", "a.yaml", '{"output": "/etc", ' + CLIP + '}', "output"),
    ("traversal name", "a.yaml", '{"name": "../x", ' + CLIP + '}', "name"),
    ("hidden name", "a.yaml", '{"name": ".hcsfs", ' + CLIP + '}', "name"),
    ("name with a slash", "a.yaml", '{"name": "a/b", ' + CLIP + '}', "name"),
    ("plane-like name", "a.yaml", '{"name": "A01_s001_w1_z001_t001.tif", ' + CLIP + '}', "name"),
    ("empty name", "a.yaml", '{"name": "", ' + CLIP + '}', "name"),
    ("overlong name", "a.yaml", json.dumps({"name": "x" * 101, "steps": [{"func": "clip"}]}), "name"),
    ("no steps", "a.yaml", '{"name": "x"}', "steps"),
    ("empty steps", "a.yaml", '{"steps": []}', "steps"),
    ("too many steps", "a.yaml", json.dumps({"steps": [{"func": "clip"}] * 51}), "steps"),
    ("two reductions", "a.yaml", '{"steps": [{"func": "max_projection"}, {"func": "mean_projection"}]}',
     "steps[1].func"),
    ("reduction without a stacked axis", "a.yaml",
     '{"group_by": ["well", "site", "channel", "z", "t"], "steps": [{"func": "max_projection"}]}',
     "steps[0].func"),
    ("table written twice", "a.yaml", '{"steps": [{"func": "label", "tables": ["objects"]}, '
                                      '{"func": "label", "tables": ["objects"]}]}', "steps[1].tables[0]"),
    ("python object tag", "a.yaml", "!!python/object/apply:os.system ['echo hi']", "spec"),
    ("python name tag in a value", "a.yaml", "steps: [{func: !!python/name:os.system ''}]", "spec"),
    ("yaml alias bomb", "a.yaml", "a: &a [x, x]\nb: &b [*a, *a]\nsteps: [{func: clip}]", "spec"),
    ("too deep", "a.yaml", "[" * 200 + "]" * 200, "spec"),
    ("too deep json", "a.json", "[" * 5000 + "]" * 5000, "spec"),
    ("too large", "a.yaml", "# " + "x" * MAX_SPEC_BYTES, "spec"),
    ("not utf-8", "a.yaml", b"steps: [{func: \xff}]", "spec"),
    ("not yaml", "a.yaml", "steps: [{func: clip", "spec"),
    ("not json", "a.json", "{steps: 1}", "spec"),
    ("not a mapping", "a.yaml", "- func: clip", "spec"),
    ("empty file", "a.yaml", "", "spec"),
    ("duplicate key", "a.yaml", "steps: [{func: clip}]\nsteps: [{func: label}]", "steps"),
    ("duplicate key json", "a.json", '{' + CLIP + ', "steps": []}', "steps"),
    ("non-string key", "a.yaml", "1: 2\nsteps: [{func: clip}]", "spec"),
    ("bad extension", "a.txt", '{' + CLIP + '}', "filename"),
]


@pytest.mark.parametrize(("kind", "filename", "content", "field"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_specs_fail_naming_the_field(registry, kind, filename, content, field) -> None:
    data = content.encode() if isinstance(content, str) else content
    with pytest.raises(SpecError) as caught:
        parse_spec(filename, data, registry)
    assert caught.value.field == field, str(caught.value)
    assert str(caught.value).startswith(f"{field}: ")


def test_at_least_twenty_kinds_each_refused_its_own_way(registry) -> None:
    """Twenty-odd kinds of bad spec, not twenty copies of one: each gets a message of its own."""
    messages = set()
    for _, filename, content, _ in MALFORMED:
        with pytest.raises(SpecError) as caught:
            parse_spec(filename, content.encode() if isinstance(content, str) else content, registry)
        messages.add(str(caught.value))
    assert len(messages) >= 20, sorted(messages)


@pytest.mark.parametrize("name", ["nuclei", "a", "run-2", "x_1.v2", "A" * 100])
def test_good_names(name: str) -> None:
    assert check_run_name(name) == name


@pytest.mark.parametrize("name", ["..", "../x", ".hcsfs", "a/b", "", "x" * 101, "README", "a..b", "-x",
                                  "x.status", "x.log", "p.TIF", 3, None])
def test_bad_names(name: object) -> None:
    with pytest.raises(SpecError) as caught:
        check_run_name(name)
    assert caught.value.field == "name"


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                     max_leaves=30)
_steps = st.lists(st.fixed_dictionaries({"func": st.sampled_from(["clip", "label", "gaussian_filter", "x"])},
                                        optional={"args": st.dictionaries(
                                            st.sampled_from(["sigma", "low", "size"]), _json, max_size=2),
                                                  "memory": st.sampled_from(["numpy", "torch", "cupy", "zz"]),
                                                  "tables": _json}), max_size=3)
_specs = st.fixed_dictionaries({}, optional={"steps": _steps | _json, "select": _json, "group_by": _json,
                                             "name": _json, "device": _json, "output": _json})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_specs | _json, as_json=st.booleans())
def test_parse_never_crashes(registry, doc: object, as_json: bool) -> None:
    data = json.dumps(doc).encode() if as_json else yaml.safe_dump(doc).encode()
    try:
        parse_spec("fuzz.json" if as_json else "fuzz.yaml", data, registry)
    except SpecError as exc:
        assert exc.field


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=300))
def test_parse_never_crashes_on_bytes(registry, data: bytes) -> None:
    for filename in ("b.yaml", "b.json"):
        try:
            parse_spec(filename, data, registry)
        except SpecError as exc:
            assert exc.field
