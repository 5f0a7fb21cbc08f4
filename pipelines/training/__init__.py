"""The training stage: the loop (loop.py) and its pieces: config, checkpoints, validation, the model
directory and the MLflow record."""
