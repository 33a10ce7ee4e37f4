"""Training: stacked models, schedules, checkpoints, progress, the loop and the job that trains a shard."""
