"""The rules score and the one scoring pipeline."""
