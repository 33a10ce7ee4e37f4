"""One run, standard library only: the switch table, schedule specs, the dataset and model catalogs, run ids
and :class:`~optbench.spec.run.RunSpec`."""
