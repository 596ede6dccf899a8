"""Several nodes on one PostgreSQL database without shared storage (``cluster:`` in the config).

* `nodes`: each node announces ``name -> DICOMweb URL`` in the ``nodes`` table (heartbeat).
* `fetch`: a worker that lacks an instance's file fetches it from the node that holds it, by
  WADO-RS (the node's own endpoint, node/api/wado.py), into the same relative path of its store.
"""
