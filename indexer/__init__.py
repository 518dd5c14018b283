"""indexer of kret."""
