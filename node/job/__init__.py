"""Jobs: a persistent queue (database rows) and the workers that run the stages."""
