"""`vflchain predict`: score new rows with both parties' saved models, as a real two-process job.

Like `vflchain run`, it starts the embedded chain (unless `[chain] url` is set), then
the host and the guest as separate `vflchain node --model DIR` processes over gRPC.
Each node loads only its own model (`DIR/guest/model.json`, `DIR/host/model.json`),
the two align the new rows by PSI and the guest writes predictions.csv (and metrics.json
when the rows have labels). The job is a chain session of its own (algorithm
"lr-predict" or "gmm-predict"), closed with the same model commitments as the training
session: nodes/phases/predict.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nodes.errors import ConfigError
from nodes.launch import Launcher


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="score new rows with both parties' saved models",
                       description="Score new rows with both parties' saved models: the embedded chain "
                       "(unless [chain] url is set), the host and the guest as separate processes over the "
                       "real transport; the rows are aligned by PSI; the guest writes predictions.csv "
                       "(and metrics.json when its rows have labels).")
    p.add_argument("--config", required=True,
                   help="job config (TOML) naming the new data ([guest] data, [host] data)")
    p.add_argument("--model", required=True,
                   help="run directory of the trained job (holding guest/model.json and host/model.json)")
    p.add_argument("--out", required=True, help="output directory (gets guest/, host/ and logs/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set guest.data=new.csv (repeatable)")
    p.add_argument("--force", action="store_true", help="replace the run directories of an earlier run in --out")
    p.set_defaults(func=handle)


class PredictLauncher(Launcher):
    """`vflchain run`'s three processes, each node started with `--model` (its own saved model)."""

    command = "predict"
    predicting = True  # new rows may come without labels

    def __init__(self, config: str, model: str, out: str, sets: list[str], force: bool = False) -> None:
        from nodes.phases.predict import load_party_model

        super().__init__(config, out, sets, force=force)
        self.model = Path(model).resolve()
        # each node reads its own model; here only to fail at once when one is missing or they disagree
        roles = ("guest", *self.cfg.host_roles())
        self.models = models = {role: load_party_model(self.model, role) for role in roles}
        algorithms = {m.algorithm for m in models.values()}
        if len(algorithms) != 1:
            kinds = ", ".join(f"{r} {m.algorithm}" for r, m in models.items())
            raise ConfigError(f"{model}: the parties' models are of different algorithms ({kinds})")
        self.cfg.job.algorithm = algorithms.pop()

    def _check_data(self) -> None:
        """Both data files load and have every column their party's model needs."""
        from nodes.datafiles import load_party_csv
        from nodes.phases.predict import check_columns

        for role in ("guest", *self.cfg.host_roles()):
            check_columns(self.models[role], load_party_csv(self.cfg.party(role).data, role,  # type: ignore[arg-type]
                                                            require_labels=False))

    def _node_args(self, role: str) -> list[str]:
        return ["--model", str(self.model)]


def handle(args: argparse.Namespace) -> int:
    return PredictLauncher(args.config, args.model, args.out, args.set, force=args.force).run()
