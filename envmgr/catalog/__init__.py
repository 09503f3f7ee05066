"""What exists: build records, stable releases, the per-family view of builds, and which spec governs a family."""
