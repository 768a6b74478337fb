"""Content topics: landed pages (HTML files or a JSON-lines catalogue) enriched with topics from their metadata
and text, a topic taxonomy from topic co-occurrence, user topic affinities from page views and content
recommendations. Runs as the `content` stage after `scores`."""
from cdp_spark.content.config import ContentConfig
from cdp_spark.content.tables import TABLES
from cdp_spark.domain_spec import Domain, Section
from cdp_spark.stage_spec import StageSpec

STAGE = StageSpec(
    "content", run="cdp_spark.content.stage:run",
    reads=("bronze.events", "gold.id_graph", "gold.event_profiles", "gold.content"),
    writes=("gold.content", "gold.topic_taxonomy", "gold.topic_affinities", "gold.content_recommendations"),
    rules=("content", "identity", "routes"))
DOMAIN = Domain("content", stage=STAGE, tables=tuple(TABLES),
                sections=(Section("content", ContentConfig, ContentConfig),))
