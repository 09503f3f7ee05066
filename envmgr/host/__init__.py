"""What this machine says: mount table and lock safety, the /proc scan, hardlink-aware disk use."""
