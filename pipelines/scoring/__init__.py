"""The batch-scoring stage: the job (job.py), the model it pins, its atomic output, and its two
engines (Spark, local)."""
