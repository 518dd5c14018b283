"""cli of kret."""
