"""vflchain from Python: run a whole federated job in one process (docs/python-api.md).

    import vflchain
    result = vflchain.run_job("examples/breast_lr.toml", {"guest": guest_df, "host": host_df},
                              overrides=["paillier.key_bits=1024", "paillier.insecure_test_keys=true"])
    result.models["host"], result.metrics, result.commitments

The parties run the same protocol code as `vflchain run` (handshake, session, PSI, binning,
training with real Paillier encryption, close), each in a thread, over the in-memory
transport; with no chain, a fresh embedded chain or an embedded chain state directory.
Estimators with scikit-learn conventions: `VerticalLogisticRegression`, `VerticalGaussianMixture`.
"""

from vflchain.api import JobFailed, JobResult, PartyResult, load_job_config, run_job
from vflchain.audit import AuditResult, audit
from vflchain.estimators import VerticalGaussianMixture, VerticalLogisticRegression

__all__ = ["AuditResult", "JobFailed", "JobResult", "PartyResult", "VerticalGaussianMixture",
           "VerticalLogisticRegression", "audit", "load_job_config", "run_job"]
