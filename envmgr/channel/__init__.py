"""The local file:// conda channel builder (from Python distributions and wheels)."""
