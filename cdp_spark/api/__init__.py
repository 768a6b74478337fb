"""The Profile API: serving store, scoped keys, masking, audit (`cdp api serve`, `cdp api keys ...`)."""
