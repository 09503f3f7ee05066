"""envmgr: conda environment and Jupyter kernel lifecycle manager for shared JupyterHubs."""

__version__ = "0.1.0"
