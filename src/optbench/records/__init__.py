"""The run record contract: make, validate, read and write records, check them against their RunSpecs, runs.csv."""
