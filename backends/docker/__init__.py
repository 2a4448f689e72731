"""The docker backend: the run's image (rendered, then built or reused by content) and its
container.

- `backend`: `DockerBackend`, which runs a command in a container and follows it.
- `container`: `ContainerSpec`, decided at plan time without an engine.
- `image`, `run_image`: render the derived image and build it; shared with the kubernetes backend.
- `wheels`, `conda`, `conda_install`: the locked environment installed into the image offline.
- `engine`, `http`: a small standard-library client of the Docker Engine API.

Nothing here imports the docker SDK at module level: it is loaded only to build, pull or push.
"""
