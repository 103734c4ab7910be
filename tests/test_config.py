"""The config is validated at start-up and wrong entries are named in the error."""

from __future__ import annotations

import copy

import pytest
import yaml

from maskbench.config import ConfigError, check_config, comparison_pairs, comparisons_for, variants_for
from conftest import REPO, copy_workflow, snakemake


def load(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / name).read_text())


def test_default_config_comparisons_expand_masks():
    config = load("config.yaml")
    check_config(config)
    masks = list(config["masks"])
    assert variants_for(config, "demo") == ["unmasked", *masks]
    assert comparisons_for(config, "demo", "test_pairs") == [
        "unmasked-vs-unmasked", *[f"unmasked-vs-{m}" for m in masks]
    ]


def test_masked_masked_means_same_mask_on_both_sides():
    config = load("lfw.yaml")
    pairs = comparison_pairs(config, "lfw", "lfw_view2")
    masks = list(config["masks"])
    assert [p for p in pairs if p[0] != "unmasked"] == [(m, m) for m in masks]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["datasets"]["demo"].__setitem__("protocols", ["nope"]), "unknown protocol 'nope'"),
        (lambda c: c["datasets"]["demo"].__setitem__("masks", ["nope"]), "unknown mask type 'nope'"),
        (lambda c: c["tables"]["benchmark2"].__setitem__("probe_variant", "nope"), "probe_variant"),
        (lambda c: c["protocols"]["test_pairs"]["comparisons"].append(["unmasked", "nope"]), "'nope'"),
    ],
)
def test_dangling_references_are_named(edit, message):
    config = copy.deepcopy(load("config.yaml"))
    edit(config)
    with pytest.raises(ConfigError, match=message):
        check_config(config)


def test_schema_rejects_unknown_key_and_wrong_type_with_their_names(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    config = load("config.yaml")
    config["align"]["chip_sise"] = 150
    (work / "bad.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(work, "-n", "--configfile", "bad.yaml", check=False)
    assert proc.returncode != 0
    assert "chip_sise" in proc.stdout

    config = load("config.yaml")
    config["datasets"]["demo"]["shards"] = "two"
    (work / "bad2.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(work, "-n", "--configfile", "bad2.yaml", check=False)
    assert proc.returncode != 0
    assert "'two' is not of type 'integer'" in proc.stdout


def test_names_that_could_escape_results_are_refused(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    config = load("config.yaml")
    config["masks"]["../../etc"] = dict(config["masks"]["surgical_blue"])
    (work / "bad.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(work, "-n", "--configfile", "bad.yaml", check=False)
    assert proc.returncode != 0
    assert "../../etc" in proc.stdout


def _with_trained_models(config: dict) -> dict:
    config = copy.deepcopy(config)
    config["models"]["head"] = {"kind": "projection", "base": "dlib_resnet",
                                "train": {"datasets": ["demo"], "loss": {"kind": "supcon"}}}
    config["models"]["both"] = {"kind": "ensemble", "members": ["dlib_resnet", "head"]}
    return config


def test_trained_model_is_only_evaluated_on_its_datasets_test_part():
    from maskbench.config import evaluable, trained_on

    config = _with_trained_models(load("config.yaml"))
    config["protocols"]["open"] = {"kind": "all_identities", "comparisons": [["unmasked", "masked"]]}
    config["protocols"]["held_out"] = {"kind": "all_identities", "comparisons": [["unmasked", "masked"]],
                                       "split": {"strategy": "identity", "part": "test"}}
    config["protocols"]["val_only"] = {"kind": "all_identities", "comparisons": [["unmasked", "masked"]],
                                       "split": {"strategy": "identity", "part": "val"}}
    assert trained_on(config, "both") == {"demo": "identity"}  # through its member
    assert [m for m in config["models"] if evaluable(config, m, "demo", "open")] == ["dlib_resnet"]  # not the head,
    # nor ensembles with it
    assert all(evaluable(config, m, "demo", "held_out") for m in config["models"])
    assert not evaluable(config, "head", "demo", "val_only")


def test_table_of_a_trained_model_on_an_unrestricted_protocol_is_refused():
    config = _with_trained_models(load("config.yaml"))
    config["protocols"]["test_pairs"].pop("split", None)
    with pytest.raises(ConfigError, match="trained on 'demo'"):
        check_config(config)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m["head"].__setitem__("base", "nope"), "models.head.base"),
        (lambda m: m["head"].__setitem__("base", "both"), "models.head.base"),
        (lambda m: m["both"].__setitem__("members", ["head", "both"]), "models.both.members"),
        (lambda m: m["both"].__setitem__("member_weights", [1.0]), "one weight per member"),
        (lambda m: m["head"]["train"].__setitem__("datasets", ["nope"]), "unknown dataset 'nope'"),
        (lambda m: m["head"]["train"].__setitem__("variants", ["nope"]), "unknown mask 'nope'"),
    ],
)
def test_model_references_are_checked(edit, message):
    config = _with_trained_models(load("config.yaml"))
    config["protocols"]["test_pairs"]["split"] = {"strategy": "identity", "part": "test"}
    edit(config["models"])
    with pytest.raises(ConfigError, match=message):
        check_config(config)


def test_projection_chain_that_loops_is_refused():
    config = _with_trained_models(load("config.yaml"))
    config["protocols"]["test_pairs"]["split"] = {"strategy": "identity", "part": "test"}
    config["models"]["head2"] = {"kind": "projection", "base": "head3",
                                 "train": {"datasets": ["demo"], "loss": {"kind": "supcon"}}}
    config["models"]["head3"] = {"kind": "projection", "base": "head2",
                                 "train": {"datasets": ["demo"], "loss": {"kind": "supcon"}}}
    with pytest.raises(ConfigError, match="depends on itself"):
        check_config(config)


def test_head_trained_on_a_mask_its_dataset_lacks_is_refused():
    config = copy.deepcopy(load("config.yaml"))
    config["datasets"]["demo"]["masks"] = ["cloth_black"]
    with pytest.raises(ConfigError, match="'surgical_blue' is not painted on 'demo'"):
        check_config(config)


@pytest.mark.parametrize(
    "model, key, value, message",
    [
        ("dlib_masked_head", "optimizer", "sgd", "for finetune models"),
        ("dlib_masked_head", "loss", {"kind": "triplet", "mining": "hardest"}, "mining"),
        ("tuned", "hidden", 64, "unknown finetune keys"),
    ],
)
def test_bad_training_settings_fail_at_start_up(model, key, value, message):
    config = copy.deepcopy(load("config.yaml"))
    config["models"]["tuned"] = {"kind": "finetune", "train": {"datasets": ["demo"], "arch": "dlib_resnet",
                                                               "loss": {"kind": "supcon"}}}
    check_config(config)
    config["models"][model]["train"][key] = value
    with pytest.raises(ConfigError, match=f"models.{model}.train: .*{message}"):
        check_config(config)


def test_bob_imported_scores_cannot_join_an_ensemble():
    config = copy.deepcopy(load("config.yaml"))
    config["models"]["theirs"] = {"kind": "imported", "format": "bob4", "scores": "s/{comparison}.txt"}
    config["models"]["ensemble"]["members"] = ["dlib_resnet", "theirs"]
    with pytest.raises(ConfigError, match="Bob-format"):
        check_config(config)


def test_validation_protocol_must_be_the_val_part_of_the_tested_split():
    config = copy.deepcopy(load("config.yaml"))
    config["protocols"]["val_pairs"] = {"kind": "all_vs_all", "comparisons": config["protocols"]["test_pairs"]["comparisons"],
                                        "split": {"strategy": "identity", "part": "val"}}
    config["datasets"]["demo"]["protocols"].append("val_pairs")
    config["protocols"]["test_pairs"]["validation"] = "val_pairs"
    check_config(config)
    config["protocols"]["val_pairs"].pop("split")
    with pytest.raises(ConfigError, match="only be applied to images it never saw"):
        check_config(config)


@pytest.mark.parametrize("kind, extra", [("finetuned", {"checkpoint": "m.safetensors"}),
                                         ("dicta_checkpoint", {"checkpoint": "cp.pth"}),
                                         ("imported", {"format": "csv", "scores": "s/{comparison}.csv"})])
def test_every_model_kind_declares_trained_on_and_the_guard_applies(kind, extra):
    """Before, only projection and finetune models had a training set: a `finetuned` checkpoint
    of the demo's train part passed the check on a protocol over every demo image."""
    from maskbench.config import evaluable, trained_on, unknown_provenance

    config = copy.deepcopy(load("config.yaml"))
    config["protocols"]["open"] = {"kind": "all_vs_all", "comparisons": [["unmasked", "masked"]]}
    config["datasets"]["demo"]["protocols"].append("open")
    config["models"]["theirs"] = {"kind": kind, **extra,
                                  "trained_on": {"datasets": ["demo"], "split": "identity"}}
    config["tables"]["leaky"] = {"metric": "eer", "ref_variant": "unmasked", "probe_variant": "surgical_blue",
                                 "models": ["theirs"], "protocol": {"demo": "open"}}
    assert trained_on(config, "theirs") == {"demo": "identity"}
    assert not evaluable(config, "theirs", "demo", "open") and evaluable(config, "theirs", "demo", "test_pairs")
    with pytest.raises(ConfigError, match="'theirs' was trained on 'demo'"):
        check_config(config)
    config["models"]["theirs"]["trained_on"] = {"datasets": ["demo"]}  # no split: any image may be seen
    config["tables"]["leaky"]["protocol"] = {"demo": "test_pairs"}
    with pytest.raises(ConfigError, match="with no split"):
        check_config(config)
    # a split by image puts a person's photos in every part: its test part tests people it learnt
    config["protocols"]["random_test"] = {"kind": "all_vs_all", "comparisons": [["unmasked", "masked"]],
                                          "split": {"strategy": "random", "part": "test"}}
    config["datasets"]["demo"]["protocols"].append("random_test")
    for split in ("random", "uniform", "per_identity"):
        config["models"]["theirs"]["trained_on"] = {"datasets": ["demo"], "split": split}
        assert not evaluable(config, "theirs", "demo", "random_test")
        assert not evaluable(config, "theirs", "demo", "test_pairs")
    config["datasets"]["demo"]["protocols"].remove("random_test")
    assert unknown_provenance(config, "theirs") == []
    del config["models"]["theirs"]["trained_on"]
    del config["tables"]["leaky"]
    check_config(config)  # unknown provenance: allowed, its cells are footnoted
    assert unknown_provenance(config, "theirs") == ["theirs"]
    assert unknown_provenance(config, "dlib_resnet") == []


@pytest.mark.parametrize("members", [["seen_all", "tuned"], ["tuned", "seen_all"]])
def test_sources_that_disagree_on_a_dataset_leave_no_part_of_it_unseen(members):
    """An ensemble of a model that may have seen every image and one trained on the identity
    split's train part was once evaluable on that split's test part when the first came first
    (the last source replaced the others); a head on a base trained on another split was
    evaluable on the base's test part, which shares images with the head's train part."""
    from maskbench.config import ALL_IMAGES, evaluable, trained_on

    config = copy.deepcopy(load("config.yaml"))
    config["protocols"]["random_test"] = {"kind": "all_vs_all", "comparisons": [["unmasked", "masked"]],
                                          "split": {"strategy": "random", "part": "test"}}
    config["models"] |= {
        "tuned": {"kind": "finetune", "train": {"datasets": ["demo"], "split": "identity"}},
        "seen_all": {"kind": "dicta_checkpoint", "checkpoint": "cp.pth", "trained_on": {"datasets": ["demo"]}},
        "seen_random": {"kind": "dicta_checkpoint", "checkpoint": "cp.pth",
                        "trained_on": {"datasets": ["demo"], "split": "random"}},
        "both": {"kind": "ensemble", "members": members},
        "head": {"kind": "projection", "base": "seen_random", "train": {"datasets": ["demo"], "split": "identity"}},
        "same": {"kind": "ensemble", "members": ["tuned", "dlib_resnet"]},
    }
    assert trained_on(config, "both") == trained_on(config, "head") == {"demo": ALL_IMAGES}
    for model in ("both", "head"):
        assert not any(evaluable(config, model, "demo", p) for p in ("test_pairs", "random_test"))
    # sources that agree keep their split's test part
    assert trained_on(config, "same") == {"demo": "identity"}
    assert evaluable(config, "same", "demo", "test_pairs") and not evaluable(config, "same", "demo", "random_test")


def test_ensemble_normalisation_is_never_fitted_on_the_tested_pairs():
    from maskbench.config import normalisation_protocol

    config = copy.deepcopy(load("config.yaml"))
    check_config(config)
    assert normalisation_protocol(config, "ensemble", "test_pairs") == "val_pairs"
    assert config["protocols"]["val_pairs"]["split"]["part"] == "val"
    config["models"]["ensemble"]["normalise_on"] = "test_pairs"
    with pytest.raises(ConfigError, match="normalise_on"):
        check_config(config)
    del config["models"]["ensemble"]["normalise_on"]
    with pytest.raises(ConfigError, match="not test scores"):
        check_config(config)
    config["protocols"]["val_all"] = {"kind": "all_vs_all", "comparisons": config["protocols"]["test_pairs"]["comparisons"],
                                      "split": {"strategy": "identity", "part": "val"}}
    config["protocols"]["test_pairs"]["validation"] = "val_all"
    config["datasets"]["demo"]["protocols"].append("val_all")
    assert normalisation_protocol(config, "ensemble", "test_pairs") == "val_all"


def test_an_ensemble_normalised_on_pairs_that_may_share_tested_images_is_named_for_its_footnote():
    from maskbench.config import normalised_on_tested, table_protocol

    config = copy.deepcopy(load("config.yaml"))
    comparisons = [["unmasked", "masked"]]
    config["protocols"] |= {
        "all_pairs": {"kind": "all_vs_all", "comparisons": comparisons},
        "random_test": {"kind": "all_vs_all", "comparisons": comparisons, "split": {"strategy": "random", "part": "test"}},
    }
    config["datasets"]["demo"]["protocols"] += ["all_pairs", "random_test"]
    check_config(config)
    # val and test parts of one split share no image; any other protocol may
    assert normalised_on_tested(config, "ensemble", "test_pairs") is None
    assert normalised_on_tested(config, "ensemble", "all_pairs") == "val_pairs"
    assert normalised_on_tested(config, "ensemble", "random_test") == "val_pairs"
    assert normalised_on_tested(config, "dlib_resnet", "all_pairs") is None  # no normalisation to speak of
    spec = {"metric": "eer", "ref_variant": "unmasked", "probe_variant": "masked"}
    assert table_protocol(config, spec, "demo") == config["datasets"]["demo"]["protocols"][0]
    assert table_protocol(config, spec | {"protocol": {"demo": "all_pairs"}}, "demo") == "all_pairs"


def test_paper_tables_footnote_the_ensemble_where_its_normalisation_pairs_may_be_tested():
    """paper.yaml reports its ensemble on all-image protocols (DICTA's 1,000 pairs, all pairs) of
    sets whose val identities fix its z-normalisation; on CelebA the table uses a test-part protocol."""
    from maskbench.config import table_normalised_on

    config = load("paper.yaml")
    check_config(config)
    notes = table_normalised_on(config, "benchmark2")
    assert list(notes) == ["ensemble"]
    assert set(notes["ensemble"].values()) == {"val_pairs"}
    assert "lfw" in notes["ensemble"] and "celeba" not in notes["ensemble"]
    assert table_normalised_on(config, "benchmark1") == {}  # no ensemble in it
    assert "celeba" not in table_normalised_on(config, "fnmr1000")["ensemble"]  # all_pairs_test there


def test_identification_on_video_frames_is_refused():
    """One frame enrolled, the same video's other frames searched: near-duplicates, not recognition."""
    config = load("paper.yaml")
    check_config(config)
    config["protocols"]["search"] = {"kind": "identification", "comparisons": [["unmasked", "unmasked"]]}
    config["datasets"]["lfw"]["protocols"].append("search")
    check_config(config)  # photos: fine
    config["datasets"]["youtube_faces"]["protocols"].append("search")
    with pytest.raises(ConfigError, match="'youtube_faces'.*groups images by video"):
        check_config(config)


def test_a_missing_pattern_image_fails_the_config_check(tmp_path):
    config = load("config.yaml")
    name = next(iter(config["masks"]))
    config["masks"][name] |= {"pattern": "image", "pattern_image": str(tmp_path / "absent.png")}
    with pytest.raises(ConfigError, match=f"masks.{name}.pattern_image: .*absent.png is not a file"):
        check_config(config)
    (tmp_path / "absent.png").write_bytes(b"x")
    check_config(config)


def test_paper_fnmr_tables_run_on_protocols_with_enough_impostors():
    """DICTA's FNMR1000 table needs >= 1,000 impostor pairs per cell; dicta1000 has 500, so every
    cell was n/a by construction. Each cell's protocol must be able to give enough."""
    from maskbench.config import evaluable, verification_protocols

    config = load("paper.yaml")
    check_config(config)
    for table, target in (("fnmr1000", 1e-3), ("fnmr0", 0.0)):
        spec = config["tables"][table]
        for dataset in config["datasets"]:
            protocol = (spec.get("protocol") or {}).get(dataset) or verification_protocols(config, dataset)[0]
            p = config["protocols"][protocol]
            if p["kind"] == "dicta1000":
                impostors = p.get("n_pairs", 1000) // 2
            else:
                assert p["kind"] == "all_vs_all", (table, dataset, protocol)
                impostors = p.get("max_impostors", float("inf"))
            assert target == 0 or impostors * target >= 10, (table, dataset, protocol, impostors)
            assert all(evaluable(config, m, dataset, protocol) for m in config["models"])


def test_a_finetuned_backbone_is_chosen_on_val_under_its_benchmark_score():
    """Its unmasked tolerance must hold for the EER the tables report: val_score defaults to the
    model's score (neg_l2 when none is set), an explicit val_score stays, heads get none."""
    from maskbench.config import training_code_spec

    train = {"datasets": ["lfw"], "arch": "dlib_resnet", "loss": {"kind": "supcon"}}
    assert training_code_spec({"kind": "finetune", "score": "cosine", "train": train})["val_score"] == "cosine"
    assert training_code_spec({"kind": "finetune", "train": train})["val_score"] == "neg_l2"
    chosen = {**train, "val_score": "inv_l2"}
    assert training_code_spec({"kind": "finetune", "score": "neg_l2", "train": chosen})["val_score"] == "inv_l2"
    assert "val_score" not in training_code_spec({"kind": "projection", "score": "neg_l2", "train": train})
    assert "datasets" not in training_code_spec({"kind": "finetune", "train": train})


@pytest.mark.parametrize("files", [
    ["config.yaml"], ["lfw.yaml"], ["lfw.yaml", "lfw-mini.yaml"], ["lfw.yaml", "lfw-finetune.yaml"],
    ["lfw.yaml", "lfw-finetune.yaml", "lfw-mini.yaml"], ["paper.yaml"], ["real_masks.yaml"], ["utkface.yaml"],
    ["utkface.yaml", "utkface-mini.yaml"],
], ids=lambda files: "+".join(files))
def test_every_shipped_config_passes_the_schema_and_the_checks(files):
    """Each config (and each documented override on it) as Snakemake merges and checks it at start-up:
    a table metric the schema did not list once made config/lfw.yaml fail before any job ran."""
    from snakemake.utils import update_config, validate

    config: dict = {}
    for name in files:
        update_config(config, load(name))
    validate(config, schema=str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    if "splits" in config:
        validate({"splits": config["splits"]}, schema=str(REPO / "workflow" / "schemas" / "attributes.schema.yaml"))
    check_config(config)


def test_figures_show_the_protocol_that_tests_the_most_models():
    """LFW's figures showed View 2 (its first protocol), where only dlib may be tested: the trained
    head and the ensemble were missing from them without a word."""
    from maskbench.config import evaluable, figure_protocol

    config = load("lfw.yaml")
    assert figure_protocol(config, "lfw") == "test_pairs"
    assert all(evaluable(config, m, "lfw", "test_pairs") for m in config["models"])
    config["models"] = {"dlib_resnet": config["models"]["dlib_resnet"]}  # tested everywhere: a tie
    assert figure_protocol(config, "lfw") == "lfw_view2"  # ties keep the first protocol
