"""`faultwatch retrain`: labelled signals through validation, a data version, the pipeline, the
promotion gate and the canary rollout."""

from __future__ import annotations

import argparse
from pathlib import Path

from faultwatch.cli.args import _number, _steps, _when
from faultwatch.errors import FaultwatchError
from faultwatch.paths import project_root


def cmd_retrain(args: argparse.Namespace) -> int:
    # imported here: the loop brings the deployment's and the pipeline's modules, which every
    # other command (and --help) would otherwise import
    from faultwatch.retrain import default_log_target, retrain

    root = project_root()
    if args.group is not None:
        from faultwatch.groups import DEFAULT_ARTIFACT, group_root

        if args.group != DEFAULT_ARTIFACT:
            group_root(root, args.group)  # a named error for an unknown or never-run group
    if (args.file is None) == (args.from_log is None):
        raise FaultwatchError("retrain: give a FILE of labelled signals or --from-log, one of them")
    if args.file is not None and (args.since is not None or args.until is not None):
        raise FaultwatchError("retrain: --since and --until select a window of --from-log")
    if args.file is not None and args.labeller:
        raise FaultwatchError("retrain: --labeller selects the labels of --from-log")
    steps = args.steps
    if steps == "":
        steps = None  # params deploy.canary_steps
    target = None
    if args.from_log is not None:
        target = args.from_log or default_log_target(root)
    return retrain(
        root,
        Path(args.file).resolve() if args.file else None,
        from_log=target,
        start=args.since,
        end=args.until,
        steps=steps,
        interval=args.interval,
        dry_run=args.dry_run,
        group=args.group,
        labellers=tuple(args.labeller or ()),
    )


def register(sub: argparse._SubParsersAction) -> None:
    rt_ = sub.add_parser(
        "retrain",
        help="labelled signals -> validate -> data version -> dvc repro -> promotion gate -> "
        "stage -> canary -> switch",
    )
    rt_.add_argument(
        "file",
        nargs="?",
        help="labelled signals in any format `prepare` reads (.tsv .csv .ts .parquet)",
    )
    rt_.add_argument(
        "--from-log",
        nargs="?",
        const="",
        metavar="TARGET",
        help="the labelled production signals of the prediction log instead (default target: "
        "FAULTWATCH_PREDICTION_LOG, else reports/serving/predictions.sqlite)",
    )
    rt_.add_argument("--since", type=_when, help="--from-log window start (unix s or ISO 8601)")
    rt_.add_argument("--until", type=_when, help="--from-log window end (unix s or ISO 8601)")
    rt_.add_argument(
        "--steps",
        nargs="?",
        const="",
        type=_steps,
        help="canary percentages (default: params deploy.canary_steps)",
    )
    rt_.add_argument(
        "--interval",
        type=_number("a number > 0", lambda v: v > 0),
        help="seconds per canary step (default: params deploy.canary_interval_s)",
    )
    rt_.add_argument(
        "--group",
        metavar="NAME",
        help="retrain this model group alone (params.yaml `groups`): its rows of the log, its "
        "stages, its gate; the fleet bento with every other group's model unchanged",
    )
    rt_.add_argument(
        "--labeller",
        action="append",
        metavar="NAME",
        help="--from-log: only the labels these labellers gave (their tokens' names; repeat "
        "for several; default: every labeller's)",
    )
    rt_.add_argument("--dry-run", action="store_true", help="validate the batch, change nothing")
    rt_.set_defaults(func=cmd_retrain)
