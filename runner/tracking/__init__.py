"""What went in and what came out of a run.

- `runner.tracking.metrics`: metrics a run reports without a library (metrics files,
  the ``REPRUN_METRICS`` stream, printed lines), summarised into the record.
- `runner.tracking.query`: the ``--where`` filter language and the fields of a run that
  ``reprun runs list`` shows, sorts and filters by.
- `runner.tracking.compare`: runs side by side (``reprun runs compare``), best values marked.
"""
