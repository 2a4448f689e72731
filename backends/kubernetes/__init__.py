"""The kubernetes backend: the run's command as a Job, pinned by image digest, followed to its end.

- `config`: the ``--backend-config`` file (pydantic model and loader).
- `manifest`: render the Job as plain data.
- `image`, `build`, `registry`: the image the Job runs, built and pushed by content.
- `api`, `watch`: the API server (the only modules that import the ``kubernetes`` client).
- `verdict`: how a Job ended, from the API's JSON (pure; no ``kubernetes`` import).
- `backend`: `KubernetesBackend`, which submits the Job and follows it.
- `jobs`: a Job's end (deleted with its pods; reprun's finalizer released).
- `recorded`: a detached run brought up to date, cancelled, or its config replayed.
- `outputs`: the files the pod wrote, brought back through its log.
"""
