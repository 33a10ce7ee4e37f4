rule train:
    input:
        f"{RESULTS}/data.json",
    output:
        directory(f"{RESULTS}/runs/{{variant}}/{{shard}}"),
    log:
        f"{RESULTS}/logs/train/{{variant}}/{{shard}}.log",
    conda:
        ENV
    threads: RESOURCES["threads"]
    resources:
        gpu=RESOURCES["gpu"],
        runtime=RESOURCES["runtime"],
        mem_mb=RESOURCES["mem_mb"],
    params:
        specs=shard_specs,
        stack=STACK,
    shell:
        OPTBENCH
        + " --threads {threads} train --quiet {params.stack} --spec-json {params.specs:q} --out-dir {output} 2> {log}"
