"""On real faces (LFW-mini, dlib's ResNet): a head trained for masks lowers the masked-probe EER
of the test identities and raises their unmasked EER by at most 0.002, under cosine and under
dlib's own score (neg_l2, the embeddings' lengths included), each compared with its base scored
the same way."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lfw_mini_embeddings import MASKS, lfw_mini_embeddings
from maskbench.evaluation import metrics
from maskbench.protocols.splits import identity_split
from maskbench.training.train_head import EmbeddingSet, scored_rows, train_projection_head

SEED = 2021
SPEC = {"loss": {"kind": "supcon", "temperature": 0.1}, "epochs": 12}


def _part(data: dict, split: dict[str, str], name: str) -> EmbeddingSet:
    rows = [i for i, image in enumerate(data["image_id"]) if split[image] == name]
    variants = ["unmasked", *MASKS]
    return EmbeddingSet(np.concatenate([data[v][rows] for v in variants]),
                        [str(data["image_id"][i]) for v in variants for i in rows],
                        [str(data["identity"][i]) for v in variants for i in rows],
                        [v for v in variants for _ in rows])


def _test_eers(head, test: EmbeddingSet, score: str) -> dict[str, float]:
    """All pairs of the test identities: unmasked vs unmasked (each pair once) and unmasked
    reference vs masked probe of another image, scored as the tables score them."""
    from scipy.spatial.distance import cdist

    emb = scored_rows(head, test.vectors, score).astype(np.float64)
    variant, ident, image = (np.array(x) for x in (test.variant, test.identity, test.image_id))
    ref = np.flatnonzero(variant == "unmasked")
    out = {}
    for probe_variant in ["unmasked", *MASKS]:
        probe = np.flatnonzero(variant == probe_variant)
        scores = emb[ref] @ emb[probe].T if score == "cosine" else -cdist(emb[ref], emb[probe])
        same = ident[ref][:, None] == ident[probe][None, :]
        usable = (np.triu(np.ones(same.shape, bool), 1) if probe_variant == "unmasked"
                  else image[ref][:, None] != image[probe][None, :])
        out[probe_variant] = metrics.eer(scores[same & usable], scores[~same & usable]).eer
    return out


@pytest.mark.realdata
@pytest.mark.parametrize("score", ["cosine", "neg_l2"])
def test_head_lowers_masked_eer_and_keeps_unmasked_eer(shared_data, pytestconfig, score):
    data = lfw_mini_embeddings(shared_data, pytestconfig.cache.mkdir("maskbench-lfw-mini"))
    split = identity_split(dict(zip(data["image_id"].tolist(), data["identity"].tolist())),
                           {"train": 0.5, "val": 0.2, "test": 0.3}, SEED).assignment
    train, val, test = (_part(data, split, p) for p in ("train", "val", "test"))
    assert not set(train.identity) & set(test.identity)
    torch.set_num_threads(1)
    result = train_projection_head(train, val, SPEC, seed=SEED, score=score)
    base, head = _test_eers(None, test, score), _test_eers(result.head, test, score)
    print(score, "test EER base", base, "head", head, "kept epoch", result.best_epoch)
    assert result.best_epoch > 0  # something was learnt, and the val rule let it through
    assert result.meta["best_val_unmasked_eer"] <= result.meta["base_val_unmasked_eer"] + 0.002
    assert head["unmasked"] <= base["unmasked"] + 0.002
    for mask in MASKS:
        assert head[mask] < base[mask], mask
    assert np.mean([base[m] - head[m] for m in MASKS]) > 0.005
