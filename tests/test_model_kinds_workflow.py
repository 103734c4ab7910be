"""Every model kind through the workflow on a small demo set: ImageNet baselines and a DICTA-format
checkpoint (benchmark 1), a fine-tuned backbone, a projection head and an ensemble (benchmark 2),
then scores exported in Bob's format and imported back as a model of their own."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import torchvision
import yaml

from conftest import REPO, copy_workflow, snakemake

pytestmark = pytest.mark.slow

TEST = "test_pairs"
PROBE = "surgical_blue"


def random_weights(dest: Path) -> dict[str, str]:
    """Randomly initialised networks saved in the formats the real files have: torchvision's
    ImageNet state dict, and the DICTA 2021 MoCo checkpoint (keys under module.encoder_q., no fc)."""
    torch.manual_seed(0)
    mobilenet = dest / "mobilenet_v2.pth"
    torch.save(torchvision.models.mobilenet_v2().state_dict(), mobilenet)
    trunk = {k: v for k, v in torchvision.models.resnet50().state_dict().items() if not k.startswith("fc.")}
    dicta = dest / "dicta_cp.pth"
    torch.save({"state_dict": {f"module.encoder_q.{k}": v for k, v in trunk.items()}}, dicta)
    return {"mobilenet": str(mobilenet), "dicta": str(dicta)}


def small_config(weights: dict[str, str]) -> dict:
    """The default config with a smaller demo set, one mask type and every model kind."""
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    return {
        "seed": base["seed"], "align": base["align"], "masks": {PROBE: base["masks"][PROBE]},
        "evaluation": {**base["evaluation"], "bootstrap": 0},
        "datasets": {"demo": {"layout": "demo", "shards": 1, "protocols": [TEST],
                              "generate": {"identities": 24, "images_per_identity": 4, "size": 250}}},
        "protocols": {TEST: {"kind": "all_vs_all", "split": {"strategy": "identity", "part": "test"},
                             "comparisons": [["unmasked", "unmasked"], ["unmasked", "masked"]]},
                      "val_pairs": {"kind": "all_vs_all", "split": {"strategy": "identity", "part": "val"},
                                    "comparisons": [["unmasked", "unmasked"], ["unmasked", "masked"]]}},
        "splits": {"ratios": {"train": 0.5, "val": 0.25, "test": 0.25}},
        "models": {
            "dlib_resnet": {"kind": "dlib_resnet", "score": "neg_l2"},
            "imagenet_mobilenet_v2": {"kind": "torchvision", "arch": "mobilenet_v2", "weights": weights["mobilenet"],
                                      "score": "cosine", "batch_size": 32},
            "dicta_cp": {"kind": "dicta_checkpoint", "checkpoint": weights["dicta"], "score": "inv_l2",
                         "batch_size": 32},
            "dlib_finetuned": {"kind": "finetune", "score": "neg_l2",
                               "train": {"datasets": ["demo"], "arch": "dlib_resnet", "epochs": 1, "batch_size": 16,
                                         "lr": 1e-5, "loss": {"kind": "supcon"}}},
            "dlib_masked_head": {"kind": "projection", "base": "dlib_resnet", "score": "neg_l2",
                                 "train": {"datasets": ["demo"], "epochs": 3, "loss": {"kind": "triplet",
                                                                                       "mining": "semi_hard"}}},
            "ensemble": {"kind": "ensemble", "members": ["dlib_resnet", "dlib_finetuned"], "normalise_on": "val_pairs"},
            "mask_aware": {"kind": "ensemble", "members": ["dlib_masked_head", "dlib_finetuned"],
                           "normalise_on": "val_pairs", "mask_aware": {"base": "dlib_resnet", "datasets": ["demo"],
                                                                       "weight_step": 0.25}},
        },
        "tables": {
            "benchmark1": {"metric": "eer", "ref_variant": "unmasked", "probe_variant": PROBE,
                           "models": ["imagenet_mobilenet_v2", "dicta_cp", "dlib_resnet"]},
            "benchmark2": {"metric": "eer", "ref_variant": "unmasked", "probe_variant": PROBE,
                           "models": ["dlib_resnet", "dlib_finetuned", "dlib_masked_head", "ensemble"]},
        },
    }


@pytest.fixture(scope="module")
def kinds_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    work = copy_workflow(root / "wf")
    config = small_config(random_weights(root))
    (work / "kinds.yaml").write_text(yaml.safe_dump(config))
    snakemake(work, "all", "--cores", "2", "--configfile", "kinds.yaml")
    return work, config


def test_every_kind_fills_its_benchmark_table(kinds_run):
    work, config = kinds_run
    for table in ("benchmark1", "benchmark2"):
        frame = pd.read_csv(work / f"results/tables/{table}.csv", index_col=0)
        print(f"{table}:\n{frame.to_string()}")
        assert list(frame.columns) == config["tables"][table]["models"]
        assert frame.loc["demo"].notna().all() and frame.loc["demo"].between(0, 1).all()
    embeddings = work / "results/demo/embeddings"
    dims = {m: pd.read_parquet(embeddings / m / "unmasked.parquet").embedding.iloc[0].size
            for m in ("imagenet_mobilenet_v2", "dicta_cp", "dlib_finetuned", "dlib_masked_head")}
    assert dims == {"imagenet_mobilenet_v2": 1280, "dicta_cp": 2048, "dlib_finetuned": 128, "dlib_masked_head": 128}


def test_mask_aware_ensemble_learns_on_train_chooses_on_val_and_is_tabled(kinds_run):
    """The mask classifier counts exactly the train and val images (bare and masked), the weights
    are chosen on val pairs within the unmasked tolerance, and the model has its rows in models.csv."""
    work, config = kinds_run
    splits = pd.read_parquet(work / "results/demo/splits/identity.parquet")
    images = splits.groupby("split").image_id.nunique().to_dict()
    classifier = json.loads((work / "results/models/mask_aware/mask_classifier.json").read_text())
    for part in ("train", "val"):
        assert classifier["report"][part]["bare"] == classifier["report"][part]["masked"] == images[part]
    weights = json.loads((work / f"results/demo/fusion/mask_aware/{TEST}.json").read_text())
    assert {weights["w_masked"], weights["w_unmasked"]} <= {0.0, 0.25, 0.5, 0.75, 1.0}
    assert weights["val_unmasked_eer"] <= weights["unmasked_limit"]
    assert weights["val_masked_eer"] <= weights["full_val_masked_eer"]
    models = pd.read_csv(work / "results/tables/models.csv")
    rows = models[(models.model == "mask_aware") & (models.protocol == TEST)]
    assert sorted(rows.probe_variant) == sorted(["unmasked", PROBE]) and rows.eer.between(0, 1).all()
    scores = pd.read_parquet(work / f"results/demo/scores/mask_aware/{TEST}/unmasked-vs-{PROBE}.parquet")
    assert (scores.status == "ok").all() and scores.score.notna().all()


def test_trained_models_learn_only_from_train_and_val(kinds_run):
    """Both training reports count exactly the train and val people of the identity split."""
    work, _ = kinds_run
    splits = pd.read_parquet(work / "results/demo/splits/identity.parquet")
    people = splits.groupby("split").identity.nunique().to_dict()
    images = splits.groupby("split").image_id.nunique().to_dict()
    head = json.loads((work / "results/models/dlib_masked_head/report.json").read_text())
    tuned = json.loads((work / "results/models/dlib_finetuned/report.json").read_text())
    for part in ("train", "val"):
        assert head["images"][part]["identities"] == tuned[part]["identities"] == people[part]
        assert head["images"][part]["images"] == tuned[part]["images"] == images[part]
    assert "test" not in head["images"] and "test" not in tuned
    print(f"head val EER {head['untrained_val_eer']:.4f} -> {head['best_val_eer']:.4f}; "
          f"fine-tuned {tuned['start_val_eer']:.4f} -> {tuned['best_val_eer']:.4f}")
    for model in ("dlib_finetuned", "dlib_masked_head"):
        assert (work / f"results/figures/training_{model}.png").stat().st_size > 0
    curve = pd.read_parquet(work / "results/models/dlib_masked_head/curve.parquet")
    assert list(curve.epoch) == [0, 1, 2, 3]


def test_exported_bob_scores_import_back_as_the_same_model(kinds_run):
    """dlib's scores out in Bob's 4-column format, back in as an `imported` model: same EER."""
    work, config = kinds_run
    comparisons = ["unmasked-vs-unmasked", f"unmasked-vs-{PROBE}"]
    targets = [f"results/demo/scores/dlib_resnet/{TEST}/{c}.bob4.txt" for c in comparisons]
    snakemake(work, *targets, "--cores", "2", "--configfile", "kinds.yaml")
    first = (work / targets[0]).read_text().splitlines()[0].split()
    assert len(first) == 4
    config["models"]["dlib_imported"] = {
        "kind": "imported", "format": "bob4", "score": "neg_l2",
        "scores": f"results/demo/scores/dlib_resnet/{TEST}/{{comparison}}.bob4.txt"}
    config["tables"]["benchmark2"]["models"].append("dlib_imported")
    (work / "kinds.yaml").write_text(yaml.safe_dump(config))
    snakemake(work, "all", "--cores", "2", "--configfile", "kinds.yaml")
    metrics = pd.read_csv(work / "results/tables/all_metrics.csv").set_index(["model", "probe_variant"])
    for probe in ("unmasked", PROBE):
        assert metrics.loc[("dlib_imported", probe), "eer"] == metrics.loc[("dlib_resnet", probe), "eer"]
        assert metrics.loc[("dlib_imported", probe), "n_genuine"] == metrics.loc[("dlib_resnet", probe), "n_genuine"]
