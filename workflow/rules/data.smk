rule prepare_data:
    output:
        f"{RESULTS}/data.json",
    log:
        f"{RESULTS}/logs/prepare_data.log",
    localrule: True
    conda:
        ENV
    params:
        dataset=EXP.settings["dataset"],
        data_dir=EXP.settings["data_dir"],
        options=json.dumps(EXP.settings["dataset_options"]),
    shell:
        OPTBENCH + " prepare-data --dataset {params.dataset} --data-dir {params.data_dir}"
        " --options {params.options:q} --out {output} 2> {log}"
