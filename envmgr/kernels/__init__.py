"""Kernelspecs, the kernel launcher and leases: how users reach a build and how gc knows they do."""
