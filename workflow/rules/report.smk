# The report's tables: every Markdown table of the run (tables/*.md) as one HTML page (optbench.report.html).
# The report shows it on its first page (workflow/report/workflow.rst) and as the result "Tables".
rule report_tables:
    input:
        [p for p in table_files() if p.endswith(".md")],
    output:
        report(layout.tables_page(RESULTS), caption="../report/tables.rst", category="Tables"),
    log:
        layout.log(RESULTS, "report_tables"),
    localrule: True
    conda:
        ENV
    shell:
        f"{OPTBENCH} report-tables --log {{log}} --tables {{input}} --out {{output}}"
