"""Series: tracking arrivals, deciding completeness, selecting LGE series."""
