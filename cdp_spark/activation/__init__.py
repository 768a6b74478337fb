"""Activation: audience members to destinations (files, webhooks, Delta), normalised, hashed and consent-gated."""
