"""The text of ``.pipelines/README`` in the mount, generated from the registry."""

from __future__ import annotations

from hcsfs.pipelines.registry import FunctionRegistry
from hcsfs.pipelines.spec import AXES, DEFAULT_GROUP_BY, MAX_SPEC_BYTES, OUTPUTS

__all__ = ["readme_text"]

_INTRO = f"""hcsfs pipelines
===============

Write a spec (YAML or JSON, at most {MAX_SPEC_BYTES // 1024} KiB) into this folder to start a run:

    cat > nuclei.yaml <<'YAML'
    select: {{channel: [1]}}
    steps:
      - {{func: gaussian_filter, memory: torch, args: {{sigma: 2}}}}
      - {{func: threshold_otsu}}
      - {{func: label, tables: [objects]}}
    YAML

Fields: name (defaults to the file name), select ({{{", ".join(AXES)}: [values]}}),
group_by (default {list(DEFAULT_GROUP_BY)}; each unit stacks the one axis left out),
device (auto | cpu | cuda:N), output ({" | ".join(OUTPUTS)}), steps (func, memory, args, tables),
illumination ({{method: median | basic, sample: 200}}: flat-field correction of every plane read,
profiles in /<name>/illumination/).

An analysis spec names the channels every unit holds, wires named results, and measures objects:

    cat > screen.yaml <<'YAML'
    channels: {{DAPI: 1, GFP: 2}}
    steps:
      - {{func: gaussian_filter, input: DAPI, args: {{sigma: 2}}, as: smooth}}
      - {{func: threshold_otsu, input: smooth, as: mask}}
      - {{func: label, input: mask, as: nuclei}}
      - {{func: expand_labels, input: nuclei, args: {{distance: 5}}, as: cells}}
      - {{measure: [shape, intensity], objects: nuclei, channels: [DAPI, GFP], table: nuclei}}
      - {{measure: [intensity], objects: cells, channels: [GFP], table: cells}}
    save: [nuclei, cells]
    rois: [nuclei]
    heatmaps: [Count_nuclei, Intensity_MeanIntensity_GFP_nuclei]
    YAML

Its run folder holds /<name>/<result>/ planes, <table>.csv, image.csv, wells.csv, rois/ (ImageJ ROI
sets) and heatmaps/ (plate pictures of wells.csv columns); see docs/pipelines.md.

<name>.status is the live JSON status, <name>.log the log; outputs appear in /<name>/ as they are
written, tables as /<name>/<table>.csv when the run is done. Removing the spec cancels its run;
writing it again restarts it. Only the functions below can run (no code, imports or shell).
A trained model runs as {{func: model, args: {{file: nuclei_unet.pt}}}}: a TorchScript or ONNX file of
the folder the mount's owner gave with --models (a file name only, never a path).

Functions
---------
"""


def readme_text(registry: FunctionRegistry) -> str:
    """The README: how to write a spec, then every function with its arguments and memory types."""
    from hcsfs.pipelines.library import is_library
    from hcsfs.pipelines.library_listing import readme_library_lines

    lines = [_INTRO]
    for name in registry.names():
        fn = registry.get(name)
        if is_library(fn):
            continue  # listed compactly below
        lines.append(f"{name}: {fn.doc}")
        if fn.accepts:
            lines.append(f"    input: {' or '.join(sorted(fn.accepts))}")
        for array in fn.array_params:
            need = "required" if array.required else "optional"
            lines.append(f"    {array.name}: {array.kind or 'any'} result, given by inputs: ({need})")
        for param in fn.params:
            lines.append(f"    {param.describe()}")
        lines.append(f"    output: {fn.output}")
        implemented = ", ".join(m.value for m in registry.memory_types(name))
        installed = ", ".join(m.value for m in registry.available_memory_types(name))
        lines.append(f"    memory: {implemented} (installed here: {installed})")
        for table, definition in fn.tables.items():
            lines.append(f"    table {table}: {definition.doc}")
        lines.append("")
    library = readme_library_lines(registry)
    if library:
        lines += [_LIBRARY_INTRO, *library, ""]
    return "\n".join(lines)


_LIBRARY_INTRO = """Library functions
-----------------
scikit-image, scipy.ndimage (ndimage.*) and clEsperanto (cle.*) functions by their module path, e.g.
{func: skimage.morphology.white_tophat, args: {footprint: {disk: 5}}}. Arguments are the library's own
(see its documentation; `hcsfs functions` lists types, defaults and ranges); footprints are written
{disk|diamond|square|rectangle: size} (per plane) or {ball|octahedron|cube: size} (per_plane: false).
Every library function takes per_plane (default true: each plane on its own; false: the whole stack,
not for the 2-D functions marked *). Memory: numpy (cupy where a GPU twin exists), cle.*: pyclesperanto.
"""
