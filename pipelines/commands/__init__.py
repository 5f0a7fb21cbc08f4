"""One module per adsrel verb."""
