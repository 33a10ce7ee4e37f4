rule aggregate:
    input:
        shard_dirs(),
    output:
        RUNS_CSV,
    log:
        f"{RESULTS}/logs/aggregate.log",
    localrule: True
    conda:
        ENV
    shell:
        OPTBENCH + " aggregate --records {input} --out {output} 2> {log}"
