"""The dashboard and the scrape-time collector."""
