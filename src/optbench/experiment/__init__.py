"""A preset: the config loaded and checked, its runs as RunSpecs in shards, sweeps, stability maps, the run lock
and the file layout (standard library, PyYAML and jsonschema; no torch)."""
