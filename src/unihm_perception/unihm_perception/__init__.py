"""RGB-D perception of UniHM."""
