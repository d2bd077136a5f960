"""Dataset rows: stable ids, the split, facet definitions."""
