"""Protocol phases of a job, one module each, each with `run_guest(ctx)` / `run_host(ctx)`.

Which phases a job runs, in order, is its algorithm's entry in `nodes.algorithms`.
The intersection phase always runs first; the job runner opens the session
before and closes it after.
"""
