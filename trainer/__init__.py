"""trainer of kret."""
