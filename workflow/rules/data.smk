rule prepare_data:
    output:
        layout.data_summary(RESULTS),
    log:
        layout.log(RESULTS, "prepare_data"),
    localrule: True
    conda:
        ENV
    params:
        dataset=EXP.settings["dataset"],
        data_dir=EXP.settings["data_dir"],
        options=json.dumps(EXP.settings["dataset_options"]),
    shell:
        OPTBENCH + " prepare-data --log {log} --dataset {params.dataset} --data-dir {params.data_dir}"
        " --options {params.options:q} --out {output}"
