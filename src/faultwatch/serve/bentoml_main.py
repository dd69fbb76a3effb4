"""`bentoml serve ...` with a Prometheus folder of the server's own:
`python -m faultwatch.serve.bentoml_main FOLDER serve ...` (faultwatch.serve.launch runs it).

BentoML keeps the metrics of a server's processes (prometheus_client's multiprocess mode) as
files in `<BENTOML_HOME>/prometheus_multiproc_dir`, and every server it starts empties that
folder first (bentoml.serving.ensure_prometheus_dir). Servers that share a store (blue and
green, and a colour's replicas, all on the project's `.bentoml`) would take each other's
counts: a server starting deletes the files of those already running, whose counts are then
lost, and each server's /metrics adds up every file in the folder, the others' included. So
each server gets a folder of its own, set here before BentoML's command line runs (its workers
get it through PROMETHEUS_MULTIPROC_DIR, as they would the default).
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml_cli.cli import cli

    folder, *rest = argv
    BentoMLContainer.prometheus_multiproc_dir.set(folder)
    cli.main(args=rest, prog_name="bentoml")


if __name__ == "__main__":
    main(sys.argv[1:])
