"""A rule's optional named inputs, which its input function gives only for some configs."""

from __future__ import annotations


def optional_input(inputs, name: str) -> str | None:
    """The one file of a rule's named input ``name``, or None where the rule gave none.

    Snakemake hands a named input over as one path or a list of them (empty where the input
    function returned nothing). More than one is a workflow error: it is reported, never one of
    them silently used.
    """
    value = getattr(inputs, name, None) or []
    paths = [value] if isinstance(value, str) else list(value)
    if len(paths) > 1:
        raise ValueError(f"input {name!r}: one file expected, the rule gave {len(paths)}: {paths}")
    return str(paths[0]) if paths else None
