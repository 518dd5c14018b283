"""engine of kret."""
