"""Batch ingestion: landing files -> bronze tables, through one DataFrame chain the streaming path can reuse.

The chain (`cdp_spark.ingest.chain.prepare`) is a pure function of a raw DataFrame and config:
enrich -> map to catalogue -> normalise -> expectations -> routes. `stage.run` adds file discovery, the file ledger
(each file once), and the writes to `bronze.events`, `bronze.profile_records`, `bronze.quarantine`,
`bronze.raw_keys` and `bronze.ingested_files`.
"""
from cdp_spark.domain_spec import Domain, Section
from cdp_spark.ingest.sources import Catalogue, RouteRule, Source, catalogue_problems
from cdp_spark.ingest.tables import TABLES
from cdp_spark.stage_spec import StageSpec

STAGE = StageSpec(
    "ingest", run="cdp_spark.ingest.stage:run",
    reads=("ops.tombstones", "bronze.ingested_files", "bronze.snapshot_state", "bronze.profile_records"),
    writes=("bronze.events", "bronze.profile_records", "bronze.quarantine", "bronze.raw_keys",
            "bronze.ingested_files", "bronze.snapshot_state"))
DOMAIN = Domain(
    "ingest", stage=STAGE, tables=tuple(TABLES), checks=(catalogue_problems,),
    sections=(Section("catalogue", Catalogue, Catalogue), Section("sources", list[Source], list),
              Section("routes", list[RouteRule], list)))
