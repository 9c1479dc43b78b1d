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

# The roles that encrypt under their own Paillier key in a phase (the others only compute on
# the peer's ciphertexts or decrypt): the job runner builds a party's encryption tables in
# the background only if one of its phases needs them.
OWN_KEY_ENCRYPTION: dict[str, frozenset[str]] = {
    "intersection": frozenset(),
    "binning": frozenset({"guest"}),
    "lr": frozenset({"guest", "host"}),
    "gmm": frozenset({"guest"}),
    "predict": frozenset(),
}


def encrypts_own(algorithm: str, role: str) -> bool:
    """Whether `role` encrypts under its own key in some phase of `algorithm`'s pipeline."""
    return any(role in OWN_KEY_ENCRYPTION.get(phase, frozenset({role})) for phase in PIPELINES[algorithm])
