"""Garbage collection: the pure retention plan, then gather, plan and apply."""
