"""Persistence: SQLAlchemy models, sessions and Alembic-managed schema."""
