"""FollowJointTrajectory servers: a simulated driver and the XHand adapter."""
