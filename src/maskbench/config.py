"""Checks of the configuration beyond its JSON schema, and the names derived from it.

The schema checks keys and types; here we check what refers to what (a dataset's protocols
exist, a table names real variants) so a typo fails at start-up with the name in the message.
"""

from __future__ import annotations

from typing import Any

UNMASKED = "unmasked"
MASKED = "masked"  # in a comparison: each of the dataset's mask types in turn


class ConfigError(ValueError):
    """A configuration that validates against the schema but does not make sense."""


def masks_for(config: dict[str, Any], dataset: str) -> list[str]:
    """Mask types painted onto a dataset (its own list, or every configured mask)."""
    return list(config["datasets"][dataset].get("masks") or config["masks"])


def variants_for(config: dict[str, Any], dataset: str) -> list[str]:
    return [UNMASKED, *masks_for(config, dataset)]


def _expand_variant(config: dict[str, Any], dataset: str, variant: str) -> list[str]:
    return masks_for(config, dataset) if variant == MASKED else [variant]


def comparison_pairs(config: dict[str, Any], dataset: str, protocol: str) -> list[tuple[str, str]]:
    """(ref_variant, probe_variant) pairs of a protocol on a dataset, with `masked` expanded.

    ``[unmasked, masked]`` gives one comparison per mask type; ``[masked, masked]`` gives the
    same mask type on both sides (name two mask types to compare different ones).
    """
    out: list[tuple[str, str]] = []
    for ref, probe in config["protocols"][protocol]["comparisons"]:
        if ref == MASKED and probe == MASKED:
            expanded = [(m, m) for m in masks_for(config, dataset)]
        else:
            expanded = [
                (r, p)
                for r in _expand_variant(config, dataset, ref)
                for p in _expand_variant(config, dataset, probe)
            ]
        out.extend(c for c in expanded if c not in out)
    return out


def comparisons_for(config: dict[str, Any], dataset: str, protocol: str) -> list[str]:
    return [f"{r}-vs-{p}" for r, p in comparison_pairs(config, dataset, protocol)]


def check_config(config: dict[str, Any]) -> None:
    """Raise ConfigError naming the first dangling reference in the config."""
    masks = set(config["masks"])
    for name, ds in config["datasets"].items():
        for mask in ds.get("masks") or []:
            if mask not in masks:
                raise ConfigError(f"datasets.{name}.masks: unknown mask type {mask!r}; known: {sorted(masks)}")
        for protocol in ds["protocols"]:
            if protocol not in config["protocols"]:
                raise ConfigError(
                    f"datasets.{name}.protocols: unknown protocol {protocol!r}; "
                    f"known: {sorted(config['protocols'])}"
                )
            spec = config["protocols"][protocol]
            if spec["kind"] == "lfw_view2":
                key = spec.get("pairs_file", "pairs")
                if key not in (ds.get("files") or {}):
                    raise ConfigError(
                        f"protocol {protocol!r} (lfw_view2) needs datasets.{name}.files.{key}: "
                        "the LFW-style pairs.txt"
                    )
        if ds["layout"] == "demo" and "generate" not in ds:
            raise ConfigError(f"datasets.{name}: the demo layout needs a `generate` entry")
        if ds["layout"] != "demo" and ds.get("images", "images") not in (ds.get("files") or {}):
            raise ConfigError(f"datasets.{name}.files needs an `{ds.get('images', 'images')}` entry")
    for protocol, spec in config["protocols"].items():
        for ref, probe in spec["comparisons"]:
            for variant in (ref, probe):
                if variant not in masks | {UNMASKED, MASKED}:
                    raise ConfigError(
                        f"protocols.{protocol}.comparisons: unknown variant {variant!r}; "
                        f"use unmasked, masked or one of {sorted(masks)}"
                    )
    for table, spec in config["tables"].items():
        if table in ("all_metrics", "coverage", "attributes", "attributes_by_group"):
            raise ConfigError(f"tables: `{table}` is the name of a built-in table; choose another")
        for key in ("ref_variant", "probe_variant"):
            if spec[key] not in masks | {UNMASKED}:
                raise ConfigError(f"tables.{table}.{key}: unknown variant {spec[key]!r}")
        for dataset in spec.get("datasets") or []:
            if dataset not in config["datasets"]:
                raise ConfigError(f"tables.{table}.datasets: unknown dataset {dataset!r}")
        for model in spec.get("models") or []:
            if model not in config["models"]:
                raise ConfigError(f"tables.{table}.models: unknown model {model!r}")
        for dataset, protocol in (spec.get("protocol") or {}).items():
            if protocol not in config["datasets"].get(dataset, {}).get("protocols", []):
                raise ConfigError(f"tables.{table}.protocol: {dataset!r} has no protocol {protocol!r}")
