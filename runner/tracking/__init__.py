"""What went in and what came out of a run.

- ``digest``: the one content digest of reprun (BLAKE3, written ``blake3:<hex>``) for files and
  directory manifests, inputs and outputs alike.
- ``statcache``: (device, inode, size, mtime) -> digest under REPRUN_HOME, so that unchanged data
  is never read twice.
- ``dvc``: the hashes DVC already records in ``.dvc`` files and ``dvc.lock``, read without DVC.
- ``inputs``: a run's inputs (path parameters, the MLproject's ``data:``, DVC-tracked data),
  fingerprinted, and the check a reproduction makes against them.
- ``lineage``: which earlier run wrote an input; the chain of runs up and down.
- ``reuse``: the key that says two runs must give the same result (``reprun run --reuse``).
- ``metrics``: metrics a run reports without a library (metrics files,
  the ``REPRUN_METRICS`` stream, printed lines), summarised into the record.
- ``query``: the ``--where`` filter language and the fields of a run that
  ``reprun runs list`` shows, sorts and filters by.
- ``compare``: runs side by side (``reprun runs compare``), best values marked.
- ``settings``: which MLflow tracking a run asked for (cheap: a run without tracking loads no more).
- ``mlflow_client``: the tracking server's REST API on the standard library (never ``mlflow``).
- ``mlflow_sink``: a run as an MLflow run, as ``mlflow run`` makes it; what fails is kept for later.
- ``mlflow_sync``: ``reprun runs sync`` (what a run could not send) and ``runs push`` (past runs).
"""
