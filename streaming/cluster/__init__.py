"""Cluster mode on Ray Serve: the only package that imports ray (docs/SCALING.md).

- `host.py`: the session-host deployment; each replica runs the single-process server
  (streaming.app) on its node and holds one streaming call open per session it serves.
- `front.py`: the signalling deployment: the page and the API on one address, offers routed to
  the session hosts, per-session requests and websockets forwarded to the replica that holds them.
- `batcher.py`: the batcher deployment (`@serve.batch` over a renderer's `render_batch`), used by
  the session hosts instead of rendering in process when it is on.
- `launch.py`: Ray started or joined, the three deployments bound and run.
"""
