"""Lock to staging to smoke test to publish to latest: the build pipeline and its outcomes."""
