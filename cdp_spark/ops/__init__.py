"""Operational tables and services: the job ledger, run leases, resume, maintenance, status, logs and the report."""
