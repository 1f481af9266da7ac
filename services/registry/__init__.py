"""Registry: the data bank of families, their cases, stages and support plans."""
