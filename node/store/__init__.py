"""Durable storage of received instances, keyed by validated UIDs."""
