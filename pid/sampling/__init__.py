"""Samplers (distilled 4-step, CFG for the undistilled teachers) and the checks on their inputs."""
