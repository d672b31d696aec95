"""Labelled tables: reading files, the schema, the notebook's split, and texts to code (`tables`)."""
