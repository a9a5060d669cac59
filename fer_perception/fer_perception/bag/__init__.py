"""bag package."""
