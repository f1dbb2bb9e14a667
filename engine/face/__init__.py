"""The face: mesh topology, expression rig, pose, identity, fitting and tracking."""
