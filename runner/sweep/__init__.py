"""Sweeps: many runs of one project over a grid, a random sample or an Optuna search.

`space` parses the value syntax and expands trials (pure); `spec` checks them against the entry
point; `record` and `store` keep the sweep's record; `driver` runs the trials in parallel;
`run` ties them together for the command line; `tracking` is the MLflow parent run; `search`
is the Optuna seam; `exclusive` lets one resume take a sweep and stops what a killed one left.
"""
