"""Data loaders: GLUE and E2E, from the hub or from local files in the original layouts."""
