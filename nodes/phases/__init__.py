"""Protocol phases of a job, one module each, each with `run_guest(ctx)` / `run_host(ctx)`.

`PIPELINES` lists the phases a job runs, in order, per `[job] algorithm`.
The intersection phase always runs first; the job runner opens the session
before and closes it after.
"""

PIPELINES: dict[str, list[str]] = {
    "psi": ["intersection"],
    "lr": ["intersection", "binning", "lr"],
    "gmm": ["intersection", "gmm"],
    # `vflchain predict` / `vflchain node --model`: score new rows with saved models
    "lr-predict": ["intersection", "predict"],
    "gmm-predict": ["intersection", "predict"],
}
