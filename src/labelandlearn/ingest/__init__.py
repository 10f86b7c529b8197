"""Import of CSV, TSV, JSON, JSON Lines, Parquet and Excel files into a project.

``sniff.sniff_file`` detects a file's format, ``readers`` stream its records, ``mapping`` turns
records into items, and ``importer.import_file`` writes them in one transaction.
"""
