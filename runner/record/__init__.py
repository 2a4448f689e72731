"""The record of a run, the product of reprun, and the store that keeps the records.

- `types`: the run record (``run.json``) as frozen dataclasses; its JSON Schema comes from them.
- `model`: how those dataclasses are written without pydantic and read back with it.
- `home`: where the store is (``REPRUN_HOME``) and whether its parts are usable.
- `store`: the run store under ``REPRUN_HOME``: run directories, records, deletion, listing.
- `index`: the store's SQLite index: its schema, a record's rows, the queries that list runs.
- `journal`: the runs the index may be missing (written before a run's directory is made).
- `listing`: listing runs from the index, reading only what is shown.
- `host`: facts about the machine a run ran on.
- `export`: a run as one portable file, and reading a run from the store or such a file.
"""

from runner.record.home import reprun_home
from runner.record.store import RunStore
from runner.record.types import RunRecord, Status

__all__ = ["RunRecord", "RunStore", "Status", "reprun_home"]
