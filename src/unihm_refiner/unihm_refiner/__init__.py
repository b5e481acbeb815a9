"""Physics-guided refinement of generated hand trajectories (paper section 3.4, appendix B.3).

``Refiner(hand).refine(wrist_poses, q, ObjectModel, target_poses)`` runs the frame-by-frame
Levenberg-Marquardt solve of contact, generative and temporal energies; ``trajectory_metrics``
measures penetration, contact, jitter and deviation. No ROS here: the node wraps this library.
"""

from unihm_core.object_model import ObjectModel
from unihm_refiner.config import RefinerConfig, RefinerConfigError, load_refiner_config
from unihm_refiner.metrics import trajectory_metrics
from unihm_refiner.solver import Refiner, RefineResult, refine_many

__all__ = ["ObjectModel", "RefineResult", "Refiner", "RefinerConfig", "RefinerConfigError",
           "load_refiner_config", "refine_many", "trajectory_metrics"]
