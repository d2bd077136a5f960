"""Labelers: where ground truth comes from (never production output)."""
