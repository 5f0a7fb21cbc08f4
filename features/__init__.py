"""adsrel features."""
