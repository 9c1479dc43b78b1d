"""`vflchain sweep`: parameter sweeps of horizontal LR, in one process, into one CSV and plots.

Each grid point x seed trains the whole federation with `vfl.hfl.simulate.run_federation`: the same
client update, DP noise, accountant and aggregation code the nodes run, without processes, chain or
network (and, unless `--encrypted`, with plaintext aggregation, which equals the encrypted one; see
docs/horizontal.md). Real multi-process jobs are `vflchain run`.

    vflchain sweep --config examples/breast_hfl.toml --out runs/sweep \\
        --grid rounds=10,30 --grid epsilon=0.5,1,inf --grid aggregation=fedavg,fedprox --seeds 5

Writes `results.csv` (one row per grid point, seed and round: the grid values, seed, round, held-out
accuracy, log loss, epsilon spent), `summary.csv` (final accuracy mean and std per grid point, and the
centralized baseline) and `plots/accuracy_vs_round*.png` (mean over seeds, +-1 std).
`epsilon=inf` means DP off.

DP noise and sampling come from a secret key per client and run, as in the nodes, so DP runs do not
repeat. `--reproducible` derives them from the seed instead: repeatable, and NOT private (anyone who
knows the seed replays and removes the noise); the console, results.csv and summary.csv say so.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np

from nodes.errors import ConfigError
from nodes.ui import console

GRID_KEYS = {"rounds": int, "learning_rate": float, "batch_size": int, "local_epochs": int, "epsilon": float,
             "aggregation": str, "mu": float, "clip": float, "dp": str, "delta": float, "alpha": float,
             "adaptive": str, "weighting": str}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="parameter sweep of a horizontal (hfl-lr) job, in-process",
                       description="Train a horizontal job over a grid of [hfl] values and seeds in one "
                       "process (same algorithm code as the nodes); write results.csv and plots.")
    p.add_argument("--config", required=True, help="an hfl-lr job config (TOML)")
    p.add_argument("--out", required=True, help="directory for results.csv and plots/")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help=f"values of an [hfl] key (repeatable; keys: {', '.join(GRID_KEYS)}); epsilon=inf: DP off")
    p.add_argument("--seeds", type=int, default=3, help="seeds per grid point (job seed, seed+1, ...)")
    p.add_argument("--encrypted", action="store_true",
                   help="aggregate over Paillier ciphertexts ([paillier] key_bits) instead of in plaintext")
    p.add_argument("--reproducible", action="store_true",
                   help="derive DP noise and sampling from the seed (repeatable results; NOT private)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.set_defaults(func=handle)


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """["rounds=10,30", "epsilon=0.5,inf"] -> {"rounds": [10, 30], "epsilon": [0.5, inf]}."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip().removeprefix("hfl.")
        if not sep or key not in GRID_KEYS:
            raise ConfigError(f"--grid {item!r}: expected KEY=V1,V2 with KEY one of {', '.join(GRID_KEYS)}")
        try:
            grid[key] = [GRID_KEYS[key](v.strip()) for v in values.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--grid {item!r}: {key} takes {GRID_KEYS[key].__name__} values") from None
        if not grid[key]:
            raise ConfigError(f"--grid {item!r}: no values")
    return grid


def _points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))]


def _options(base: Any, point: dict[str, Any]) -> Any:
    from vfl.errors import VflError

    values = dict(point)
    if "epsilon" in values and math.isinf(values["epsilon"]):
        values["dp"] = "off"
        values.pop("epsilon")
    elif "epsilon" in values and base.dp == "off" and "dp" not in values:
        values["dp"] = "gaussian"  # a finite epsilon means DP on
    opts = dataclasses.replace(base, **values)
    try:
        opts.validate()
    except VflError as exc:
        raise ConfigError(f"grid point {point}: {exc}") from None
    return opts


def handle(args: argparse.Namespace) -> int:
    from nodes.config import load_config
    from nodes.datafiles import load_party_csv
    from nodes.hfl_config import options, require
    from vfl.hfl.randomness import SEEDED_LABEL
    from vfl.hfl.simulate import run_federation

    cfg = load_config(args.config, args.set)
    if cfg.job.algorithm != "hfl-lr":
        raise ConfigError(f"{args.config}: vflchain sweep needs [job] algorithm = \"hfl-lr\"")
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    grid = parse_grid(args.grid)
    shards = []
    for path in require(cfg, "data"):
        d = load_party_csv(path, "guest")
        shards.append((d.X, d.y))
    base = options(cfg)
    points = _points(grid) or [{}]
    keys = None
    if args.encrypted:
        from vfl.paillier import generate_keypair

        keys = generate_keypair(cfg.paillier.key_bits)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    con = console()
    if args.reproducible:
        con.print(f"[bold red]--reproducible: DP noise and sampling are {SEEDED_LABEL}[/]")
    rows: list[dict[str, Any]] = []
    curves: list[tuple[dict[str, Any], np.ndarray]] = []
    total = len(points) * args.seeds
    done = 0
    for point in points:
        opts = _options(base, point)
        accs = []
        for s in range(args.seeds):
            seed = cfg.job.seed + s
            hist = run_federation(shards, opts, seed, keys=keys, precision=cfg.paillier.precision,
                                  reproducible=args.reproducible)
            accs.append(hist.accuracy)
            for r, (acc, loss, eps) in enumerate(zip(hist.accuracy, hist.loss, hist.epsilon_spent, strict=True)):
                rows.append({**{k: point.get(k, getattr(opts, k)) for k in grid}, "dp": opts.dp, "seed": seed,
                             "round": r, "accuracy": acc, "log_loss": loss,
                             "epsilon_spent": "" if math.isinf(eps) else eps,
                             "dp_randomness": _randomness(opts.dp, args.reproducible)})
            done += 1
        curve = np.array(accs)
        curves.append((point, curve))
        note = " (DP noise from the seed: NOT private)" if args.reproducible and opts.dp != "off" else ""
        con.print(f"[{done}/{total}] {_label(point) or 'config'}: final accuracy "
                  f"{curve[:, -1].mean():.4f} ± {curve[:, -1].std():.4f} over {args.seeds} seeds{note}")
    fields = list(dict.fromkeys([*grid, "dp", "seed", "round", "accuracy", "log_loss", "epsilon_spent",
                                 "dp_randomness"]))
    with (out / "results.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    _summary(out, cfg, shards, base, curves, grid, args.seeds, args.reproducible)
    plots = _plot(out, curves, grid)
    con.print(f"wrote {out / 'results.csv'} ({len(rows)} rows) and {len(plots)} plot(s) in {out / 'plots'}")
    return 0


def _randomness(dp: str, reproducible: bool) -> str:
    """The results.csv / summary.csv label of where a run's DP noise came from."""
    from vfl.hfl.randomness import SEEDED_LABEL

    if dp == "off":
        return "no DP"
    return SEEDED_LABEL if reproducible else "secret"


def _summary(out: Path, cfg: Any, shards: list, base: Any, curves: list[tuple[dict[str, Any], np.ndarray]],
             grid: dict[str, list[Any]], seeds: int, reproducible: bool) -> None:
    """summary.csv: final held-out accuracy mean and std over seeds per grid point, and the centralized
    baseline (scikit-learn LogisticRegression on the pooled training rows, same held-out rows)."""
    from vfl.hfl.simulate import centralized_accuracy

    central = np.array([centralized_accuracy(shards, base, cfg.job.seed + s) for s in range(seeds)])
    with (out / "summary.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*grid, "seeds", "accuracy_mean", "accuracy_std", "dp_randomness"])
        for point, curve in curves:
            dp = _options(base, point).dp
            w.writerow([*(point[k] for k in grid), seeds, curve[:, -1].mean(), curve[:, -1].std(),
                        _randomness(dp, reproducible)])
        w.writerow([*(["centralized"] + [""] * (len(grid) - 1) if grid else []), seeds, central.mean(), central.std(),
                    "no DP"])
    console().print(f"centralized (pooled rows, scikit-learn): accuracy {central.mean():.4f} ± {central.std():.4f}")


def _label(point: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items())


def _plot(out: Path, curves: list[tuple[dict[str, Any], np.ndarray]], grid: dict[str, list[Any]]) -> list[Path]:
    """One figure per value of `aggregation` (if swept), else one: accuracy vs round, a line per point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[tuple[dict[str, Any], np.ndarray]]] = {}
    for point, curve in curves:
        name = f"_{point['aggregation']}" if "aggregation" in grid and len(grid["aggregation"]) > 1 else ""
        groups.setdefault(name, []).append((point, curve))
    (out / "plots").mkdir(exist_ok=True)
    paths = []
    for name, items in groups.items():
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for point, curve in items:
            x = np.arange(curve.shape[1])
            mean, std = curve.mean(axis=0), curve.std(axis=0)
            label = _label({k: v for k, v in point.items() if not (name and k == "aggregation")}) or "config"
            ax.plot(x, mean, label=label)
            ax.fill_between(x, mean - std, mean + std, alpha=0.15)
        ax.set_xlabel("global round")
        ax.set_ylabel("held-out accuracy (mean ± std over seeds)")
        ax.set_title("hfl-lr sweep" + (f": {name[1:]}" if name else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / "plots" / f"accuracy_vs_round{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
