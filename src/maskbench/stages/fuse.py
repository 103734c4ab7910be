"""The fusion stage: an ensemble's scores of one comparison from its members' scores."""

from __future__ import annotations

from typing import Mapping, Sequence

from maskbench.evaluation.fusion import fuse_score_files


def fuse_step(member_scores: Mapping[str, str], out_path: str, weights: Sequence[float] | None = None,
              reference_scores: Mapping[str, str] | None = None) -> dict:
    """Fuse ``{member: scores file}`` (normalised with ``{member: reference scores file}``, the
    same members) into ``out_path``."""
    members = list(member_scores)
    reference = None
    if reference_scores:
        if list(reference_scores) != members:
            raise ValueError(f"reference scores are of {list(reference_scores)}, the members are {members}")
        reference = [reference_scores[m] for m in members]
    return fuse_score_files(paths=[member_scores[m] for m in members], members=members, out_path=out_path,
                            weights=weights, reference_paths=reference)
