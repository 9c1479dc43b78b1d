"""A party's consent policy: which partners, algorithms, key sizes, own columns and how many predictions.

Each node reads its own `[policy]` (or the file `[policy] file` names) and checks every
job against it in the handshake, after the peer proved its account (nodes.identity) and
before anything is written on chain or any data phase starts. See docs/deployment.md.

Default partners: none are accepted unless listed (`partners = ["0x..."]`, or `["*"]` for
any account registered on the contract with the peer's role), except on a development
chain, whose keys are public anyway: there the development account of the peer's role
(chain.accounts.DEV_INDEX) is the default partner, so the examples and the demo run as
they are.

Prediction jobs are counted per partner and UTC day in `<state>/predictions-<role>.json`
(kept across restarts, updated under a file lock).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterable
from pathlib import Path

from nodes.config import JobConfig, PolicySection
from nodes.errors import NodeError

ANY = "*"


class PolicyRefusal(NodeError):
    """The job is outside this party's consent policy."""


def default_partners(chain_id: int, peer_role: str) -> list[str]:
    """Partners accepted when `[policy] partners` is empty: the dev account of the peer's role, on dev chains."""
    from chain.accounts import DEV_INDEX, dev_account, is_dev_chain

    if is_dev_chain(chain_id) and peer_role in DEV_INDEX:
        return [dev_account(DEV_INDEX[peer_role]).address]
    return []


def state_dir(cfg: JobConfig) -> Path:
    """Where this node keeps its policy counters: `[policy] state`, else `policy` beside `[chain] state`."""
    return Path(cfg.policy.state) if cfg.policy.state else Path(cfg.chain.state).parent / "policy"


def check_job(policy: PolicySection, *, chain_id: int, peer_role: str, peer_account: str, algorithm: str,
              peer_key_bits: int, own_columns: Iterable[str]) -> None:
    """Raise PolicyRefusal (one line) if the job breaks the policy; the quota is `PredictionQuota`'s."""
    partners = policy.partners or default_partners(chain_id, peer_role)
    if ANY not in partners and peer_account.lower() not in {p.lower() for p in partners}:
        how = "(none listed)" if not partners else f"({len(partners)} listed)"
        raise PolicyRefusal(f"the {peer_role}'s account {peer_account} is not among this party's "
                            f"[policy] partners {how}")
    base = algorithm.removesuffix("-predict")
    if policy.algorithms and base not in policy.algorithms and algorithm not in policy.algorithms:
        raise PolicyRefusal(f"algorithm {algorithm!r} is not allowed by this party's [policy] algorithms "
                            f"({', '.join(policy.algorithms)})")
    if peer_key_bits < policy.min_key_bits:
        raise PolicyRefusal(f"the {peer_role}'s Paillier key has {peer_key_bits} bits, this party's "
                            f"[policy] min_key_bits is {policy.min_key_bits}")
    if policy.columns:
        allowed = set(policy.columns)
        extra = [c for c in own_columns if c not in allowed]
        if extra:
            more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
            raise PolicyRefusal(f"the job would use column {extra[0]!r}{more}, which this party's "
                                f"[policy] columns does not allow")


class PredictionQuota:
    """Prediction jobs per partner and UTC day, in a JSON file that survives restarts."""

    def __init__(self, directory: Path, role: str, per_day: int) -> None:
        self.path = Path(directory) / f"predictions-{role}.json"
        self.per_day = per_day

    def take(self, partner: str, today: str | None = None) -> int:
        """Count one prediction job for `partner` today; PolicyRefusal if the day's quota is used up."""
        day = today or dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
        who = partner.lower()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise NodeError(f"cannot keep prediction counts in {self.path}: {exc.strerror or exc}") from None
        with os.fdopen(fd, "r+", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            text = fh.read()
            try:
                counts = json.loads(text) if text.strip() else {}
            except ValueError:
                raise NodeError(f"{self.path}: prediction counts are not JSON; fix or remove the file") from None
            used = int(counts.get(day, {}).get(who, 0))
            if used >= self.per_day:
                raise PolicyRefusal(f"the partner {partner} has used its {self.per_day} prediction jobs for "
                                    f"{day} ([policy] predictions_per_day)")
            counts = {day: {**counts.get(day, {}), who: used + 1}}  # only today is kept
            fh.seek(0)
            fh.truncate()
            json.dump(counts, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        return used + 1
