"""Statistics on runs.csv (numpy and pandas only; no files, no matplotlib): heatmaps, budgets, stability, compare."""
