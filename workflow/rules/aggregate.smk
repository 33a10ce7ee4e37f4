rule aggregate:
    input:
        shard_dirs(),
    output:
        RUNS_CSV,
    params:
        src=SRC,
    log:
        f"{RESULTS}/logs/aggregate.log",
    localrule: True
    conda:
        ENV
    shell:
        "PYTHONPATH={params.src} python -m optbench aggregate --records {input} --out {output} 2> {log}"
