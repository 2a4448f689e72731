"""The model registry: versions and aliases of run outputs, each traceable to its run.

- `types`: a version file and an alias move (dataclasses pydantic validates; the schema's source).
- `names`: model names, aliases and references (``NAME``, ``NAME:3``, ``NAME@alias``).
- `store`: the files under ``REPRUN_HOME/models``, the lock, the blobs kept by digest.
- `register`: what a run's output becomes as a version (checks, lineage, the MLmodel file).
- `auto`: the versions an MLproject's ``models:`` registers when a run finishes.
- `fetch`: ``models get``, checked against the digests.
- `again`: ``models reproduce``: the run made again, the model compared.
- `mirror`: the same versions and aliases in an MLflow tracking server's registry.
- `serve`: MLflow's scoring server in the model's own recorded environment.
- `view`: the JSON of ``list`` and ``show`` (the CLI's ``--json`` and the web view's).
"""
