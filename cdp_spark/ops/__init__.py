"""Operational tables and services: the job ledger."""
