"""The synthetic world generator and its ground truth."""
