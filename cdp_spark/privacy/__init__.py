"""Privacy: erasure with verification, tombstones and ingest suppression (`cdp erase ...`)."""
