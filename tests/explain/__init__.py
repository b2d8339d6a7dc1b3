"""Explanations: factors, what-if, peers, the explain command."""
