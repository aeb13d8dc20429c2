"""The subcommands of ``titan-ray``: what each is called, says and accepts, and where its code is.

``COMMANDS`` holds one ``Command`` per subcommand, in the order ``titan-ray --help`` lists them. An
entry is everything the parser needs (the name, a one-line summary, the ``--help`` text, the
options) and the ``"module:function"`` of the command's ``run(args) -> int`` (the exit code).
``titan_ray.cli`` builds the parser from the entries and loads only the chosen command's ``run``,
by name through ``titan_ray.lazy``: the command modules (``titan_ray.commands.arena``, ...) import
the arena, Ray or Tune at their top, and ``titan-ray --help`` imports none of them.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from titan_ray.commands._training import add_training_arguments
from titan_ray.config import default_config_path


@dataclass(frozen=True)
class Command:
    """One subcommand: its name as typed, its help, its options, and where its ``run`` is."""

    name: str
    summary: str  # one line in the command list of ``titan-ray --help``
    description: str  # ``titan-ray NAME --help``, shown as written
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: str  # "module:function" of ``run(args: argparse.Namespace) -> int``, loaded when the command runs


_ARENA = """\
Replay a market through several trading models at once, each a Ray actor with its own virtual
portfolio in one ledger, and rank them on a live leaderboard.

With no --config the default arena runs: a seeded synthetic market of 12 correlated symbols
(15-minute bars, volatility regimes, fat tails) through the baseline models sma_crossover,
rsi_reversion, buy_and_hold (the benchmark) and random (the null hypothesis), and the learned
models lightgbm, lstm_attention, tft and stacking, which fit on the first 1000 bars (warm-up)
and then trade; a few minutes on 2 cores. titan_ray/configs/baselines.yaml runs the baselines
alone (seconds), titan_ray/configs/full.yaml a larger market with rolling refits.
Every trade can answer "why?": titan-ray why DECISION_ID --run DIR.

The results folder holds leaderboard.json, equity.parquet, trades.parquet, orders.parquet,
decisions.parquet, run.json and equity.png.

examples:
  titan-ray arena
  titan-ray arena --config my_arena.yaml --out runs/today
  titan-ray arena --address auto            # on the Ray cluster this machine belongs to
  titan-ray arena --config titan_ray/configs/alpaca.yaml   # Alpaca bars; keys from APCA_API_KEY_ID
                                             # and APCA_API_SECRET_KEY; `live:` in it trades the stream
                                             # bar by bar until a limit or Ctrl-C
"""


def _arena_arguments(arena: argparse.ArgumentParser) -> None:
    arena.add_argument("--config", type=Path, metavar="FILE",
                       help=f"arena YAML config (default: the packaged {default_config_path().name})")
    arena.add_argument("--out", type=Path, metavar="DIR",
                       help="results folder (default: runs/arena-YYYYMMDD-HHMMSS in the current directory)")
    arena.add_argument("--address", metavar="ADDR",
                       help="join a running Ray cluster ('auto' for the local one) instead of starting a "
                            "private Ray for this run")
    arena.add_argument("--seed", type=int, help="override the config's seed")
    arena.add_argument("--chunk-size", type=int, metavar="N",
                       help="override replay.chunk_size (timestamps per message; 1 = live-like)")
    arena.add_argument("--resume", type=Path, metavar="DIR",
                       help="continue an interrupted run in DIR from its journal (the config is DIR/config.json; "
                            "--config and the overrides do not apply)")
    arena.add_argument("--quiet", action="store_true", help="no progress or tables, only the results path")
    arena.add_argument("--llm-cache-only", action="store_true",
                       help="llm models answer from their response cache only and the run fails on a miss "
                            "(sets TITAN_RAY_LLM_CACHE_ONLY=1, so Ray actors see it too): an offline, "
                            "bit-identical rerun")


_DATA = ("Load the market data of an arena config exactly as the arena would, "
         "and print its shape and every rejected bar with its reason.")


def _data_arguments(data: argparse.ArgumentParser) -> None:
    data.add_argument("--config", type=Path, metavar="FILE", help="arena YAML config (default: the packaged one)")
    data.add_argument("--limit", type=int, default=20, help="rejected bars to list (default 20)")


_REPORT = """\
Write DIR/report.html: the dashboard of a finished arena run as one self-contained file, with
the leaderboard (every metric, significance against the benchmark), every model's equity curve
and drawdown on one chart, each model's positions, orders, fills, rejections and round trips,
and the "Why?" explanation behind every listed trade. The data, the chart library and the
scripts are inlined: open it from disk, mail it, archive it; it needs no server and no network.

DIR is the results folder of `titan-ray arena --out DIR`.

examples:
  titan-ray report runs/arena-20250101-120000
  titan-ray report runs/today --out today.html --trades 2000
"""


def _report_arguments(report: argparse.ArgumentParser) -> None:
    report.add_argument("dir", type=Path, metavar="DIR", help="results folder of a finished `titan-ray arena` run")
    report.add_argument("--out", type=Path, metavar="FILE", help="where to write the report (default: DIR/report.html)")
    report.add_argument("--trades", type=int, default=500, metavar="N",
                        help="latest fills, orders and round trips per model to include, each with its "
                             "explanation (default 500)")
    report.add_argument("--points", type=int, default=2000, metavar="N",
                        help="equity points per model on the chart, downsampled evenly (default 2000)")
    report.add_argument("--quiet", action="store_true", help="print only the report's path")


_SERVE = """\
Deploy a Ray Serve config (default serve_configs/arena.yaml) and keep it running until Ctrl-C,
like `serve run`, with the same file `serve deploy` and KubeRay's RayService accept.

The shipped arena.yaml serves a LightGBM model (trained and registered at start-up when the model
registry holds none yet), the baselines, an A/B experiment with a shadow arm, and a live arena of
the same models on a synthetic feed at a live-like pace, so every route has data on a fresh clone.
The dashboard is at http://HOST:PORT/, the API under /v1 (OpenAPI at /openapi.json).

Each served model and each experiment is an application of its own (model-NAME at
/v1/predict/NAME, experiment-NAME at /v1/experiments/NAME/predict), so a prediction takes one hop.
The private Ray starts in Serve's throughput-optimized mode: HAProxy (bundled with ray[serve]) takes
HTTP and hands each request to the replica's own HTTP server (--proxy python: Serve's Python proxy).

Mutating routes (PUT /v1/experiments/NAME/weights, POST /v1/models/NAME/kill-switch, registry
promotion) need `Authorization: Bearer TOKEN`: the value of TITAN_RAY_API_TOKEN, or a JWT with the
route's scope (`titan-ray token`, signed with TITAN_RAY_JWT_SECRET). Export them before starting:
the private Ray and its replicas inherit them (never put them in the config's runtime_env, whose
values Ray logs). Locked reads, rate limits and the audit trail: docs/security.md.

examples:
  titan-ray serve
  titan-ray serve --port 8080
  titan-ray serve --config serve_configs/production.yaml --address auto   # on a running Ray cluster
  titan-ray serve --address auto --detach                                 # deploy and return
"""


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=Path("serve_configs/arena.yaml"), metavar="FILE",
                   help="Serve config YAML (default: serve_configs/arena.yaml)")
    p.add_argument("--address", metavar="ADDR",
                   help="join a running Ray cluster ('auto' for the local one) instead of starting a private Ray")
    p.add_argument("--host", help="override http_options.host of the config (default there: 0.0.0.0)")
    p.add_argument("--port", type=int, help="override http_options.port of the config (default there: 8000)")
    p.add_argument("--detach", action="store_true",
                   help="deploy and return, leaving the app running on the cluster (needs --address)")
    p.add_argument("--proxy", choices=["haproxy", "python"], default="haproxy",
                   help="what takes HTTP on a private Ray: haproxy (default: Serve's throughput-optimized mode, "
                        "about 2x the requests/s of python here, benchmarks/serve_latency.py) or python (Serve's "
                        "Python proxy). On a cluster (--address) the nodes' environment decides: see docs/serve.md")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="seconds to wait for the app to be RUNNING (start-up training included; default 600)")


_TUNE = """\
Sample configs of a learned model (lightgbm, lstm_attention, tft, ...) from the search space of a
YAML file, score each by walk-forward validation on the training period only (the first
`train_bars` bars; the arena's trading period is never loaded), let ASHA stop poor trials after
their first folds, then refit the best config on the whole training period and register it in the
model registry. A fold's score is the annualised Sharpe ratio of trading its test block through
the arena's own ledger, with the config's costs.

The run folder holds the Tune experiment (trials/), summary.csv and summary.txt (the table printed
at the end, every trial with its params, folds run, scores and whether ASHA stopped it), best.json
(the winner's params, score and registry reference) and config.json.

Use the winner in the arena with a model entry such as
  - {name: gbm, kind: lightgbm, artifact: lightgbm_sweep}        # or lightgbm_sweep@3
and replay.warmup_bars set to the training period's length, so the arena trades only after it.

examples:
  titan-ray tune --config tune_configs/lightgbm.yaml
  titan-ray tune --config tune_configs/lstm_attention.yaml --num-samples 4 --out runs/lstm-sweep
"""


def _tune_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser, config_help="sweep YAML (see tune_configs/lightgbm.yaml)", out_prefix="tune",
                           registry_help="override registry.path (where the winner is stored)")


_TRAIN_PPO = """\
Train a PPO policy (RLlib, new API stack) on TradingEnv: observations are the feature pipeline's
rows for every symbol plus the weights the policy holds, actions are target weights, the reward is
the change of equity net of slippage and commission, booked by the arena's own ledger. Episodes
are windows drawn from the training period (the first `train_bars` bars, minus the last
`validation_bars`); nothing after the training period is loaded.

Trials run through ray.tune.Tuner (the YAML's `search` samples PPO settings; ASHA stops poor
trials), with checkpoints in the run folder. Each finished trial's policy is then run greedily
over the validation bars at the end of the training period; the best one is registered under the
config's `name` as kind `ppo` (the RLModule, the feature scaler and the action map).

The run folder holds the Tune experiment (trials/, with checkpoints), summary.csv / summary.txt
and best.json.

Use it in the arena with
  - {name: ppo, kind: ppo, artifact: ppo_small}
and replay.warmup_bars set to train_bars (so the arena trades only after the training period).

examples:
  titan-ray train-ppo --config tune_configs/ppo.yaml
  titan-ray train-ppo --config tune_configs/ppo_small.yaml --out runs/ppo-try
"""


def _train_ppo_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser, config_help="PPO YAML (see tune_configs/ppo.yaml)", out_prefix="ppo",
                           registry_help="override registry.path")
    parser.add_argument("--iterations", type=int, metavar="N", help="override training.iterations")


_TOURNAMENT = """\
Run many arenas and give a verdict instead of one number: every market (synthetic scenarios with
their seeds, your files), every walk-forward window and every variant of the models' parameters,
the arenas in parallel as Ray tasks (a bounded number at once, on whatever nodes the cluster
has). Each arena is a normal arena with its own results folder under DIR/arenas/.

DIR/tournament.json holds the verdict: per model the distribution of each metric across the
arenas (median, quartiles, worst), its win rate against the benchmark, mean rank and rank spread,
the Probabilistic Sharpe Ratio and the Deflated Sharpe Ratio (corrected for the number of models
and variants tried, Bailey and Lopez de Prado 2014), pass_all (a higher Sharpe than the benchmark
in every arena) and a word: robust, mixed or noise. It is written from the arenas' summaries in
a fixed order, so a tournament resumed after an interruption writes the same bytes.

With windows each arena fits its learned models on the window's training part (replay.warmup_bars)
and trades only its test part; models may not refit while trading (params.refit_every).

examples:
  titan-ray tournament --config titan_ray/configs/tournament.yaml
  titan-ray tournament --config my_tournament.yaml --out runs/t1 --address auto
  titan-ray tournament --resume runs/t1          # finish an interrupted tournament
"""


def _tournament_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="tournament YAML: base (or base_config), markets, windows, variants, max_in_flight")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="tournament folder (default: runs/tournament-YYYYMMDD-HHMMSS)")
    p.add_argument("--resume", type=Path, metavar="DIR",
                   help="finish the tournament in DIR: arenas already done are not run again")
    p.add_argument("--address", metavar="ADDR",
                   help="run the arenas on a running Ray cluster ('auto' for the local one)")
    p.add_argument("--quiet", action="store_true", help="no progress or table, only the folder's path")


_WHY = """\
Print why a model made one decision: the sentence a trader reads, what the order did, the
explanation method (SHAP TreeExplainer, Integrated Gradients, attention, stacking contributions,
rule), the base value, and each input with its value and attribution as a text bar chart, the
strongest first.

Decision ids look like MODEL:SYMBOL:BAR (the `decision_id` column of trades.parquet, orders.parquet
and decisions.parquet in the run folder). For additive methods the check line shows
|sum of attributions + base - model output| (SHAP additivity, IG completeness).

examples:
  titan-ray why lgbm:BBB:1234 --run runs/arena-20250101-120000
  titan-ray why lgbm:BBB:1234 --run runs/today --top 5
  titan-ray why lgbm:BBB:1234 --run runs/today --json
"""


def _why_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("decision_id", metavar="DECISION_ID", help="MODEL:SYMBOL:BAR")
    parser.add_argument("--run", type=Path, required=True, metavar="DIR",
                        help="results folder of `titan-ray arena --out DIR` (holds decisions.parquet)")
    parser.add_argument("--top", type=int, default=10, metavar="N", help="inputs to show, strongest first (default 10)")
    parser.add_argument("--json", action="store_true", help="print the explanation as JSON instead")


_REGISTRY = """\
List the models in the model registry and govern which version serves: every model has at most
one champion and one challenger, two aliases a config names in place of a version number:

  champion    what Serve's model apps and the arena load (artifact: lgbm@champion)
  challenger  a candidate under evaluation, e.g. what a retraining job registers (lgbm@challenger);
              a version cannot be champion and challenger at once
  archived    a stage, not an alias: versions retired by a promotion, a rollback or a rejection

promote makes the challenger (or --version N) the champion and archives the champion it replaces;
rollback makes the champion before the current one champion again (or --to N) and archives the
current one; two rollbacks go two champions back; reject archives the challenger. A newly
registered version gets no alias. Every change needs --why and is recorded with who made it
(--who, default $TITAN_RAY_USER, else your login name), when, and the evidence (--evidence FILE.json).

The registry folder is --registry, else $TITAN_RAY_REGISTRY, else ./registry. Next to a model's
versions (REGISTRY/NAME/v0001/, ...), REGISTRY/NAME/aliases.json holds the current aliases and
archived versions, REGISTRY/NAME/history.jsonl every change (one JSON event per line, oldest first);
a lock file makes concurrent changes safe. Changes exit 0 and print one line saying what changed;
an impossible change (no such version, no challenger, an empty --why) exits 2 with the reason.

examples:
  titan-ray registry list
  titan-ray registry list lgbm
  titan-ray registry alias lgbm challenger 4 --why "nightly retrain on the last 90 days"
  titan-ray registry promote lgbm --why "beats the champion: p=0.01 over 5000 bars" --evidence ab.json
  titan-ray registry rollback lgbm --why "fill rate dropped after the promotion"
  titan-ray registry reject lgbm --why "worse drawdown than the champion"
  titan-ray registry history lgbm --json
"""


def _registry_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, summary: str, description: str, *, changes: bool) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=summary, description=description)
        p.add_argument("--registry", type=Path, metavar="PATH",
                       help="registry folder (default: $TITAN_RAY_REGISTRY, else ./registry)")
        if changes:
            p.add_argument("--why", required=True, metavar="TEXT", help="why this change is made (recorded)")
            p.add_argument("--who", metavar="NAME", help="who makes it (default: $TITAN_RAY_USER, else the login name)")
            p.add_argument("--evidence", type=Path, metavar="FILE.json",
                           help="a JSON object recorded with the change (e.g. an A/B test's p_value and n_bars)")
        return p

    listing = action("list", "every model's versions: kind, created, stage, validation metrics",
                     "Print every version of every model (or of NAME): version, kind, created, stage "
                     "(champion, challenger, archived) and its key validation metrics.", changes=False)
    listing.add_argument("name", nargs="?", metavar="NAME", help="only this model")
    history = action("history", "a model's alias changes, oldest first",
                     "Print every alias change of NAME, oldest first: when, who, the action, the alias, the "
                     "version it now names and the one before, why, and the evidence's key numbers.",
                     changes=False)
    history.add_argument("name", metavar="NAME")
    history.add_argument("--json", action="store_true", help="print the events as JSON lines instead")
    alias = action("alias", "point champion or challenger at a version",
                   "Point ALIAS (champion or challenger) at VERSION of NAME. Setting the champion this way "
                   "records the one it replaces (rollback returns to it) but archives nothing; to replace "
                   "the champion by the challenger use promote.", changes=True)
    alias.add_argument("name", metavar="NAME")
    alias.add_argument("alias", metavar="ALIAS", choices=["champion", "challenger"], help="champion or challenger")
    alias.add_argument("version", type=int, metavar="VERSION")
    promote = action("promote", "make the challenger (or --version N) the champion; archive the old one",
                     "Make the challenger of NAME (or --version N) its champion. The champion it replaces is "
                     "archived; the challenger alias is cleared when the challenger was promoted.", changes=True)
    promote.add_argument("name", metavar="NAME")
    promote.add_argument("--version", type=int, metavar="N", help="promote this version instead of the challenger")
    rollback = action("rollback", "bring back the previous champion (or --to N); archive the current one",
                      "Make the champion before the current one of NAME (from the history; or --to N) its "
                      "champion again, and archive the current one. Rolling back twice goes two champions "
                      "back.", changes=True)
    rollback.add_argument("name", metavar="NAME")
    rollback.add_argument("--to", type=int, metavar="N", help="roll back to this version")
    reject = action("reject", "archive the challenger and clear the alias",
                    "Archive the challenger of NAME and clear the challenger alias.", changes=True)
    reject.add_argument("name", metavar="NAME")

_TOKEN = """\
Mint a JSON Web Token for the HTTP API (HS256, signed with $TITAN_RAY_JWT_SECRET), for local use and
scripts. Servers holding the same secret accept it; the audit trail and the rate limits know its
holder by --sub. The token alone goes to stdout.

Scopes: read (the GET routes, predictions when reads are locked), trade (the kill switch), admin
(experiment weights, promotion and rollback, the audit trail); admin holds trade and read.

examples:
  export TITAN_RAY_JWT_SECRET=$(openssl rand -hex 32)     # before `titan-ray serve` / `ray start`
  TOKEN=$(titan-ray token --scope read --ttl 1h)
  curl -H "Authorization: Bearer $TOKEN" localhost:8000/v1/leaderboard
  titan-ray token --scope admin --sub alice --ttl 15m
"""


TTL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> float:
    """``"1h"`` -> 3600.0; ``s``, ``m``, ``h``, ``d`` or plain seconds."""
    match = TTL.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: write 90s, 30m, 1h or 7d")
    return float(match.group(1)) * TTL_UNITS[match.group(2)]


def _token_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scope", action="append", required=True, metavar="SCOPE",
                   help="a scope to grant: read, trade or admin (repeat it, or write 'read trade')")
    p.add_argument("--ttl", type=parse_ttl, default=parse_ttl("1h"), metavar="DURATION",
                   help="how long it is valid: 90s, 30m, 1h (default), 7d")
    p.add_argument("--sub", metavar="NAME", help="the identity (sub claim) the audit trail and rate limits see "
                   "(default local:$USER)")
    p.add_argument("--issuer", metavar="ISS", help="the iss claim, when the server checks auth.issuer")
    p.add_argument("--audience", metavar="AUD", help="the aud claim, when the server checks auth.audience")
    p.add_argument("--secret-env", default="TITAN_RAY_JWT_SECRET", metavar="VAR",
                   help="the environment variable holding the HS256 secret (default TITAN_RAY_JWT_SECRET)")


COMMANDS: tuple[Command, ...] = (
    Command("arena", "run an arena of trading models", _ARENA, _arena_arguments, "titan_ray.commands.arena:run"),
    Command("data", "load the config's market data and report what ingestion rejected", _DATA, _data_arguments,
            "titan_ray.commands.data:run"),
    Command("report", "write a static HTML report of a finished run (opens without a server)", _REPORT,
            _report_arguments, "titan_ray.commands.report:run"),
    Command("serve", "serve models, A/B experiments and the live arena over HTTP (Ray Serve)", _SERVE,
            _serve_arguments, "titan_ray.commands.serve:run"),
    Command("tune", "sweep a learned model's hyper-parameters (Ray Tune, ASHA) and register the best", _TUNE,
            _tune_arguments, "titan_ray.commands.tune:run"),
    Command("train-ppo", "train a PPO trading policy on RLlib and register it for the arena", _TRAIN_PPO,
            _train_ppo_arguments, "titan_ray.commands.train_ppo:run"),
    Command("tournament", "many arenas (markets, windows, variants) in parallel on Ray, and a verdict", _TOURNAMENT,
            _tournament_arguments, "titan_ray.commands.tournament:run"),
    Command("why", "explain one decision of a finished run", _WHY, _why_arguments, "titan_ray.commands.why:run"),
    Command("registry", "list registered models; promote, roll back or reject champion and challenger",
            _REGISTRY, _registry_arguments, "titan_ray.commands.registry:run"),
    Command("token", "mint a JWT for the HTTP API (read, trade, admin scopes)", _TOKEN, _token_arguments,
            "titan_ray.commands.token:run"),
)
