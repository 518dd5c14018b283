"""evaluators of kret."""
