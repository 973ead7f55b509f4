"""The bulk runtime: `hornet-classify-bulk`, a Ray Data job (inputs -> decode tasks -> model actors -> Parquet)."""
