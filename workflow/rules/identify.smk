# identification{protocol}: an unmasked gallery and probes per dataset, then per model and probe
# variant the closed-set rank-k / CMC and open-set FNIR at FPIR targets. Only datasets with a
# protocol of kind identification get these rules; [real, real] adds a real-masked gallery.


if IDENTIFICATION:

    rule identification_protocol:
        conda:
            "../../envs/evaluate.yaml"
        wildcard_constraints:
            dataset=one_of(IDENTIFICATION),
            protocol=one_of(IDENTIFICATION_PROTOCOLS),
        input:
            aligned=aligned_shards,
            copies=PATHS["copies"],  # a probe copying an enrolled picture is not searched
            split=protocol_split_file,
            code=script_code("identification_protocol"),
        output:
            **identification_manifests(),
        params:
            protocol=lambda wc: config["protocols"][wc.protocol],
            seed=SEED,
        log:
            "results/logs/identification/{dataset}/{protocol}.log",
        threads: 1
        resources:
            mem_mb=2000,
            runtime=lambda wc, attempt: 20 * attempt,
        script:
            "../scripts/identification_protocol.py"

    # [real, real]: the gallery enrolled from real-masked photos, the same unknown people
    rule identification_protocol_real:
        conda:
            "../../envs/evaluate.yaml"
        wildcard_constraints:
            dataset=one_of(IDENTIFICATION),
            protocol=one_of(IDENTIFICATION_PROTOCOLS),
        input:
            aligned=aligned_shards,
            copies=PATHS["copies"],  # a probe copying an enrolled picture is not searched
            split=protocol_split_file,
            code=script_code("identification_protocol"),
        output:
            **identification_manifests(real=True),
        params:
            protocol=lambda wc: config["protocols"][wc.protocol],
            seed=SEED,
            gallery_variant="real",
        log:
            "results/logs/identification/{dataset}/{protocol}.real-vs-real.log",
        threads: 1
        resources:
            mem_mb=2000,
            runtime=lambda wc, attempt: 20 * attempt,
        script:
            "../scripts/identification_protocol.py"

    rule identify:
        conda:
            "../../envs/evaluate.yaml"
        wildcard_constraints:
            dataset=one_of(IDENTIFICATION),
            protocol=one_of(IDENTIFICATION_PROTOCOLS),
            model=one_of(SCORED_MODELS),
            probe_variant=r"[a-z0-9][a-z0-9_]*",
        input:
            gallery=identification_manifests()["gallery"],
            probes=identification_manifests()["probes"],
            embeddings=identification_embeddings,
            code=script_code("identify"),
        output:
            PATHS["identification"],
        params:
            score=lambda wc: model_score(wc.model),
            ranks=lambda wc: identification_setting(wc, "ranks", DEFAULT_RANKS),
            fpir_targets=lambda wc: identification_setting(wc, "fpir_targets", DEFAULT_FPIR_TARGETS),
            embeddings=identification_embedding_groups,
        log:
            "results/logs/identify/{dataset}/{model}/{protocol}/{probe_variant}.log",
        threads: 1
        resources:
            mem_mb=2000,
            runtime=lambda wc, attempt: 20 * attempt,
        script:
            "../scripts/identify.py"

    rule identify_real_gallery:
        conda:
            "../../envs/evaluate.yaml"
        wildcard_constraints:
            dataset=one_of(IDENTIFICATION),
            protocol=one_of(IDENTIFICATION_PROTOCOLS),
            model=one_of(SCORED_MODELS),
        input:
            gallery=identification_manifests(real=True)["gallery"],
            probes=identification_manifests(real=True)["probes"],
            embeddings=real_gallery_embeddings,
            code=script_code("identify"),
        output:
            PATHS["identification_real"],
        params:
            score=lambda wc: model_score(wc.model),
            ranks=lambda wc: identification_setting(wc, "ranks", DEFAULT_RANKS),
            fpir_targets=lambda wc: identification_setting(wc, "fpir_targets", DEFAULT_FPIR_TARGETS),
            gallery_variant="real",
            probe_variant="real",
            embeddings=real_gallery_embedding_groups,
        log:
            "results/logs/identify/{dataset}/{model}/{protocol}/real-vs-real.log",
        threads: 1
        resources:
            mem_mb=2000,
            runtime=lambda wc, attempt: 20 * attempt,
        script:
            "../scripts/identify.py"

    # every identification result in one long table
    rule identification_table:
        conda:
            "../../envs/evaluate.yaml"
        input:
            results=[e["path"] for e in identification_entries()],
            code=script_code("identification_table"),
        output:
            csv=report(
                path("table", table="identification"),
                caption="../report/identification.rst",
                category="Tables",
                labels={"table": "identification"},
            ),
            md=path("table_md", table="identification"),
        params:
            entries=identification_entries(),
        log:
            "results/logs/tables/identification.log",
        threads: 1
        resources:
            mem_mb=1000,
            runtime=lambda wc, attempt: 10 * attempt,
        script:
            "../scripts/identification_table.py"
