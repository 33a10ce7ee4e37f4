"""Training: stacked models, schedules, the runs built (build), one epoch (epoch), the loop's state (state), the
records' shared fields (record_fields), checkpoints, progress, the loop and the job that trains a shard."""
