rule train:
    input:
        f"{RESULTS}/data.json",
    output:
        directory(f"{RESULTS}/runs/{{variant}}/{{shard}}"),
    params:
        src=SRC,
        specs=shard_specs,
    threads: RESOURCES["threads"]
    resources:
        gpu=RESOURCES["gpu"],
        runtime=RESOURCES["runtime"],
        mem_mb=RESOURCES["mem_mb"],
    log:
        f"{RESULTS}/logs/train/{{variant}}/{{shard}}.log",
    conda:
        ENV
    shell:
        "PYTHONPATH={params.src} python -m optbench --threads {threads} train --quiet --spec-json {params.specs:q} --out-dir {output} 2> {log}"
