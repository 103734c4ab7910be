"""The identification stages: the protocol's manifests for a dataset, then one model's searches
with one probe variant (closed-set rank-k and CMC, open-set FNIR at FPIR targets).

The gallery is enrolled unmasked; ``[real, real]`` adds a second gallery enrolled from the
real-masked photos, searched with the people's other real-masked photos."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from maskbench.evaluation import identification as ident
from maskbench.io.atomic import write_json, write_table
from maskbench.config import DEFAULT_FPIR_TARGETS, DEFAULT_RANKS, UNMASKED
from maskbench.protocols.galleries import (
    IdentificationSet,
    check_identification,
    choose_identification,
    gallery_table,
    identification_report,
    probes_table,
    without_copies_of_enrolled,
)
from maskbench.io.copies import find_copies
from maskbench.io.readers import embedding_matrix, read_aligned
from maskbench.protocols.pairs import ProtocolError, restrict_to_split
from maskbench.protocols.variant_pools import BARE, REAL, split_pools, unaligned_real

log = logging.getLogger(__name__)

def with_real_probes(chosen: IdentificationSet, real: dict[str, str],
                     copies: list[list[str]] = ()) -> tuple[IdentificationSet, pa.Table]:
    """The set with every real-masked photo of its people added as a probe (mated when the person
    is enrolled), and the probes table with a ``real_mask`` column telling the two pools apart.
    The gallery stays bare; a real-masked photo whose chip copies an enrolled bare one of its person
    (one picture filed in both pools) is left out as a bare copy is (``copies``)."""
    people = {n for _, n in chosen.gallery} | {n for _, n, _ in chosen.probes}
    enrolled = {n for _, n in chosen.gallery}
    extra = [(i, n, n in enrolled) for i, n in sorted(real.items(), key=lambda kv: (kv[1], kv[0])) if n in people]
    notes = chosen.notes
    if copies:
        kept = without_copies_of_enrolled(IdentificationSet(chosen.gallery, extra, {}), copies).probes
        key = "probes_copies_of_enrolled_images"
        notes = {**notes, key: notes.get(key, 0) + len(extra) - len(kept)}
        extra = kept
    chosen = IdentificationSet(chosen.gallery, [*chosen.probes, *extra], notes)
    table = probes_table(chosen)
    flags = [False] * (table.num_rows - len(extra)) + [True] * len(extra)
    return chosen, table.append_column("real_mask", pa.array(flags, pa.bool_()))


def build_identification(aligned_paths: list[str], protocol: dict[str, Any], seed: int, gallery_path: str,
                         probes_path: str, report_path: str, split_path: str | None = None,
                         gallery_variant: str = UNMASKED, copies_path: str | None = None) -> dict:
    """Write the gallery and probe manifests of one identification protocol, and their counts.

    ``gallery_variant`` ``real`` writes the ``[real, real]`` set instead: each person's
    real-masked photos chosen as the bare gallery's are, the same people left unknown.
    ``copies_path`` is the dataset's copies file (the copies stage); without it the copies are
    found here, from the chips."""
    if protocol["kind"] != "identification":
        raise ValueError(f"protocol kind {protocol['kind']!r} is not identification")
    if gallery_variant not in (UNMASKED, REAL):
        raise ValueError(f"an identification gallery is enrolled unmasked or real-masked, not {gallery_variant!r}")
    aligned = read_aligned(aligned_paths)
    usable = aligned.usable
    images, _, split_entry = restrict_to_split(usable, protocol, split_path)
    real = aligned.real_masked & set(images)
    # real-masked photos the aligner could not use take part as if aligned, with no embedding: a probe
    # among them is a failed search (a miss, as a synthetic mask's face not found); the people are
    # those of the verification pairs
    unaligned = unaligned_real(aligned, set(images.values()))
    if gallery_variant == REAL and not (real or unaligned):
        raise ProtocolError("identification [real, real]: no real-masked photo of a person with bare photos")
    pools, pool_notes = (split_pools({**images, **unaligned}, real | set(unaligned)) if real or unaligned
                         else ({BARE: images}, None))
    too_few = protocol.get("too_few_images", "left_out")
    chosen = choose_identification(pools[BARE], seed, protocol.get("gallery_size", 1),
                                   protocol.get("unknown_fraction", 0.0), too_few_images=too_few)
    copies = find_copies(aligned_paths, images, copies_path)  # a probe copying an enrolled picture would find itself
    if copies:
        chosen = without_copies_of_enrolled(chosen, copies)
    check_identification(chosen, pools[BARE])
    if gallery_variant == REAL:
        # the bare set's people only (its unknown ones unknown again), so the two galleries compare
        people = {n for _, n in chosen.gallery} | {n for _, n, _ in chosen.probes}
        unknown = {n for _, n, mated in chosen.probes if not mated}
        # chosen as if every photo had aligned: one that did not fails where it falls (an enrolled
        # one leaves its person's searches without a mate: misses, as a failure to enrol does)
        pool = {i: n for i, n in pools[REAL].items() if n in people}
        chosen = choose_identification(pool, seed, protocol.get("gallery_size", 1),
                                       protocol.get("unknown_fraction", 0.0), unknown=unknown,
                                       too_few_images=too_few)
        if copies:
            chosen = without_copies_of_enrolled(chosen, copies)
        check_identification(chosen, pool)
    report = identification_report(chosen)
    probes = probes_table(chosen)
    if gallery_variant == REAL:
        report |= {"gallery_variant": REAL, "probe_variant": REAL, "pools": pool_notes,
                   "real_images_of_people_outside_the_bare_set": len(pools[REAL]) - len(pool),
                   "real_probes_not_aligned": sum(i in unaligned for i, _, _ in chosen.probes),
                   "real_gallery_images_not_aligned": sum(i in unaligned for i, _ in chosen.gallery)}
    elif real or unaligned:
        chosen, probes = with_real_probes(chosen, pools[REAL], copies)
        report |= {"real_probes": probes.num_rows - report["probes"], "pools": pool_notes,
                   "real_probes_not_aligned": sum(i in unaligned for i, _, _ in chosen.probes)}
        if copies:  # the bare and the real-masked probes left out
            report["probes_copies_of_enrolled_images"] = chosen.notes["probes_copies_of_enrolled_images"]
    if split_entry:
        report["split"] = split_entry
    write_table(gallery_path, gallery_table(chosen))
    write_table(probes_path, probes)
    write_json(report_path, report)
    log.info("identification: %d gallery images, %d mated and %d non-mated probes", report["gallery_images"],
             report["mated_probes"], report["non_mated_probes"])
    return report


def _embedded(table: pa.Table, ids: pa.Array, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows of ``table`` with an embedding, their embeddings)."""
    rows = pc.index_in(table["image_id"], value_set=ids)
    have = pc.is_valid(rows).to_numpy(zero_copy_only=False)
    return have, matrix[rows.fill_null(0).to_numpy()[have]] if have.any() else matrix[:0]


def identify_step(gallery_path: str, probes_path: str, embedding_paths: dict[str, list[str]], score_kind: str,
                  out_json: str, ranks: Sequence[int] = DEFAULT_RANKS,
                  fpir_targets: Sequence[float] = DEFAULT_FPIR_TARGETS, probe_variant: str | None = None,
                  gallery_variant: str = UNMASKED) -> dict:
    """Search every probe (in ``probe_variant``) against the gallery (in ``gallery_variant``,
    unmasked unless the ``[real, real]`` set is given); write the metrics.

    ``embedding_paths`` maps variant -> embedding shards: the gallery variant's, and the
    probe variant's (inferred when it is the only other key). A search that cannot run (its probe,
    or every gallery image of its mate, has no embedding) stays in the counts and the rates: a
    mated one is a miss at every rank and threshold, a non-mated one raises no alarm.
    """
    if probe_variant is None:
        others = sorted(set(embedding_paths) - {gallery_variant})
        if len(others) > 1:
            raise ValueError(f"several probe variants {others} given: name one as probe_variant")
        probe_variant = others[0] if others else gallery_variant
    for variant in {gallery_variant, probe_variant}:
        if variant not in embedding_paths:
            raise ValueError(f"no embedding files given for variant {variant!r}")
    gallery = pq.read_table(gallery_path)
    probes = pq.read_table(probes_path)
    if "real_mask" in probes.column_names:  # a set with real masks: the probes of this variant's pool
        probes = probes.filter(pc.equal(probes["real_mask"], probe_variant == REAL))
    g_ids, g_matrix = embedding_matrix(embedding_paths[gallery_variant])
    if probe_variant == gallery_variant:
        p_ids, p_matrix = g_ids, g_matrix
    else:
        p_ids, p_matrix = embedding_matrix(embedding_paths[probe_variant])
    g_have, g_emb = _embedded(gallery, g_ids, g_matrix)
    p_have, p_emb = _embedded(probes, p_ids, p_matrix)
    g_identity = np.asarray(gallery["identity"].to_pylist(), dtype=str)[g_have]
    if g_emb.shape[0] == 0 and gallery_variant == UNMASKED:
        raise ident.IdentificationError(
            f"{gallery_path}: the gallery is empty after dropping images without an embedding in {gallery_variant} "
            f"({gallery.num_rows} enrolled); check the embed stage's statuses"
        )
    listed_identity = np.asarray(probes["identity"].to_pylist(), dtype=str)
    listed_mated = probes["mated"].to_numpy(zero_copy_only=False).astype(bool)
    mate_lost = listed_mated & ~np.isin(listed_identity, np.unique(g_identity))
    searched = p_have & ~mate_lost
    p_emb = p_emb[searched[p_have]]
    p_identity, mated = listed_identity[searched], listed_mated[searched]
    failed_mated = int((listed_mated & ~searched).sum())
    failed_non_mated = int((~listed_mated & ~searched).sum())
    counts = {
        "gallery_images": gallery.num_rows,
        "gallery_images_embedded": int(g_have.sum()),
        "gallery_identities": int(np.unique(g_identity).size),
        "probes": probes.num_rows,
        "probes_missing_embedding": int((~p_have).sum()),
        "probes_whose_mate_has_no_embedding": int((mate_lost & p_have).sum()),
        "mated_searches": int(listed_mated.sum()),
        "mated_searches_failed": failed_mated,
        "non_mated_searches": int((~listed_mated).sum()),
        "non_mated_searches_failed": failed_non_mated,
    }
    result: dict[str, Any] = {
        "gallery_variant": gallery_variant,
        "probe_variant": probe_variant,
        "score": score_kind,
        "counts": counts,
        "closed_set": None,
        "open_set": None,
    }
    if g_emb.shape[0] == 0:  # a real-masked gallery none of whose photos was aligned: every search failed
        log.warning("%s: no gallery image has an embedding in %s: every mated search is a miss", gallery_path,
                    gallery_variant)
        result["status"] = "no gallery image has an embedding: every mated search is a miss"
        result["closed_set"] = ident.all_failed_closed_set(counts["mated_searches"], ranks)
    else:
        result["closed_set"] = ident.closed_set(g_emb, g_identity, p_emb[mated], p_identity[mated], score_kind,
                                                ranks, failed=failed_mated)
    if counts["non_mated_searches"] and g_emb.shape[0]:
        top_ids, top_scores, runner_up = ident.top_two(g_emb, g_identity, p_emb, score_kind)
        result["open_set"] = ident.open_set(top_ids, top_scores, p_identity, mated, fpir_targets, runner_up,
                                            failed_mated, failed_non_mated)
    write_json(out_json, result)
    log.info("%s probes: rank-1 %.4f over %d mated searches; %d non-mated", probe_variant,
             result["closed_set"]["rank_1"] if 1 in ranks else float("nan"), counts["mated_searches"],
             counts["non_mated_searches"])
    return result
