"""Named sets of rendering settings a mask type can take with ``rendering: <name>``.

``realistic`` holds the settings whose synthetic masked photos came closest to real masked photos
(rwmfd-mini) on the score of ``maskbench.faces.realism_score`` in the grid of
``benchmarks/bench_detect.py --grid``. A key set on the mask type itself wins over the preset.
They are a preset rather than the defaults of every mask type so that the published mask types
(the NIST flat fills, the DICTA 2021 polygon) and every existing table keep their bytes.
"""

from __future__ import annotations

from typing import Any

RENDERING_PRESETS: dict[str, dict[str, Any]] = {
    # grid best on 120 photos (score 0.75; without shading and weave 1.10, all off 1.19)
    "realistic": {"match_shading": 1.0, "fabric_variety": 1.0,
                  "match_blur": True, "match_noise": True, "jpeg_quality": 75},
}


def apply_preset(values: dict[str, Any]) -> dict[str, Any]:
    """A mask spec with its ``rendering`` preset filled in under the keys it sets itself."""
    name = values.get("rendering")
    if name is None:
        return dict(values)
    if name not in RENDERING_PRESETS:
        raise ValueError(f"mask key 'rendering': unknown value {name!r}; known: {sorted(RENDERING_PRESETS)}")
    return {**RENDERING_PRESETS[name], **values}
