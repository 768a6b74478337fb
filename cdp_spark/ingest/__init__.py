"""Batch ingestion: landing files -> bronze tables, through one DataFrame chain the streaming path can reuse.

The chain (`cdp_spark.ingest.chain.prepare`) is a pure function of a raw DataFrame and config:
enrich -> map to catalogue -> normalise -> expectations -> routes. `stage.run` adds file discovery, the file ledger
(each file once), and the writes to `bronze.events`, `bronze.profile_records`, `bronze.quarantine`,
`bronze.raw_keys` and `bronze.ingested_files`.
"""
