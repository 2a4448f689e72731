"""The slurm backend: the run's command as a Slurm batch job, followed to its end.

- `config`: the ``--backend-config`` file (pydantic model and loader, the truth).
- `settings`: the config as a run uses it (a frozen dataclass; validated configs are cached).
- `commands`: the one seam to sbatch, squeue, sacct, scontrol, sinfo and scancel.
- `stage`: the code, batch script, log and outputs under the shared ``workdir``; the sbatch argv.
- `status`: Slurm's job states mapped onto reprun's statuses; the accounting figures.
- `array`: a sweep's trials submitted as one job array, and squeue asked once for its tasks.
- `backend`: `SlurmBackend`, which submits the job and follows it.
- `setup`: what a run checks before anything is recorded (config, sbatch, partition).
"""
