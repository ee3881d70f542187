"""Pages: what the answers may say about a page (registry.py), the city's page list
(listing.py) and its command line (cli.py, `python -m aggregator.pages`)."""
