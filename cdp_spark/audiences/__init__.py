"""Audiences: definitions (conf/audiences), one-scan compilation to Spark, membership, changes and sizes."""
