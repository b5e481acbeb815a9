"""Physics-guided refinement of generated hand trajectories."""
