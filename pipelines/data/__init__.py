"""The data stage: Spark jobs that write raw logs (synth) and turn them into task shards (prepare),
and the one reader of input files that raw logs and candidates share."""
