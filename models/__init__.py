"""adsrel models."""
