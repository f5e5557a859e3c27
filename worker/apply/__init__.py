"""Apply what fal said about a job (a callback, a poll, a fetched result) to its row.

callback: read fal's webhook body; delivery: apply a stored delivery to its job;
outcome: the job's final state, whoever learned it first; result_files: the fal File
objects found in a result.
"""
