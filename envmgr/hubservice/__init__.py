"""The staff web page: a JupyterHub service to build now, watch the build, and roll back.

``envmgr serve`` runs it (managed by the hub or external; docs/hub-service.md).
The modules below ``app``/``handlers`` import tornado and jupyterhub; ``jobs``
(detached builds) and ``pagedata`` (what the page shows) do not, so the CLI,
tests and other tools can use them without a hub.
"""
