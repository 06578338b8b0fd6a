"""Data loaders: GLUE, E2E and SQuAD, from the hub or from local files in the original layouts."""
