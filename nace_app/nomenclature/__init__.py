"""The NACE Rev 2.1 nomenclature: codes, headings, levels and paths (`structure`)."""
