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
  the ``REPRUN_METRICS`` stream, printed lines), summarised into the record; ``metricfiles``
  reads the stream and the files (never through a link: `runner.nofollow`); ``patterns``
  matches metric patterns with a time limit.
- ``query``: the ``--where`` filter language and the fields of a run that
  ``reprun runs list`` shows, sorts and filters by.
- ``compare``: runs side by side (``reprun runs compare``), best values marked.
- ``mlflow/``: reprun and MLflow tracking servers (settings, the REST client, the sink that makes
  a run an MLflow run, sync and push); see its ``__init__``.
"""
