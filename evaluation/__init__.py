"""adsrel evaluation."""
