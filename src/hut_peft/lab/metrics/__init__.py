"""Metrics as the papers report them: GLUE (Matthews, Pearson, accuracy, F1) and the E2E challenge set."""
