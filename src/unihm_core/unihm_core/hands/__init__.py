"""Hand types: configs (one YAML per hand), the registry, and kinematics.

A hand pose is a wrist pose in SE(3) (the canonical wrist frame, docs/hands.md) plus the hand's
actuated joints in its config's order.
"""

from unihm_core.hands.config import (
           FINGER_NAMES,
           HandConfig,
           HandConfigError,
           Keypoint,
           load_hand_config,
)
from unihm_core.hands.kinematics import HandKinematics, hand_kinematics
from unihm_core.hands.registry import UnknownHandError, get_hand_config, hand_ids

__all__ = ["FINGER_NAMES", "HandConfig", "HandConfigError", "HandKinematics", "Keypoint",
           "UnknownHandError", "get_hand_config", "hand_ids", "hand_kinematics",
           "load_hand_config"]
