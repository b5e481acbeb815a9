"""Launch files, parameters, executive and driver adapters of UniHM."""
