"""Content topics: landed pages (HTML files or a JSON-lines catalogue) enriched with topics from their metadata
and text, a topic taxonomy from topic co-occurrence, user topic affinities from page views and content
recommendations. Runs as the `content` stage after `scores`."""
