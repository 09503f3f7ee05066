"""Spec to conda-lock: solving, reading and writing locks, and the policy check of a solved spec."""
