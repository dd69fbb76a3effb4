"""`faultwatch report`: reports/index.html, or the list of the files under reports/; and the
page's refresh after the commands whose results DVC does not watch."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from faultwatch import progress
from faultwatch.paths import project_root
from faultwatch.report_page import PAGE, refresh, write_page

NEXT_AFTER_PIPELINE = "`git add -A && git commit -m candidate`, then `faultwatch promote`"


def list_reports(args: argparse.Namespace) -> int:
    """The files under reports/, one line per folder, then the page that shows them all
    (`faultwatch report --list`; `faultwatch reports`, its old name, still works)."""
    root = project_root()
    reports = root / "reports"
    files = sorted(
        p.relative_to(reports)
        for p in reports.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p != root / PAGE
    )
    folders: dict[str, list[str]] = {}
    for rel in files:
        folder = f"{rel.parts[0]}/" if len(rel.parts) > 1 else "./"
        folders.setdefault(folder, []).append(rel.as_posix().removeprefix(folder))
    print(f"reports under {reports}:")
    width = max((len(f) for f in folders), default=0) + 2
    for folder, names in sorted(folders.items(), key=lambda kv: (kv[0] == "./", kv[0])):
        text = textwrap.fill(
            ", ".join(names),
            width=100,
            initial_indent=f"  {folder:<{width}}",
            subsequent_indent=" " * (width + 2),
        )
        print(text)
    page, nxt = PAGE.as_posix(), progress.pasteable(NEXT_AFTER_PIPELINE)
    if (root / PAGE).is_file():
        print(f"all of it on one page: {page} (open it in a browser); next: {nxt}")
    else:
        write = progress.pasteable("faultwatch report")
        print(f"{page} is not written yet: `{write}` writes it; next: {nxt}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    if args.list:
        return list_reports(args)
    root = project_root()
    path = write_page(root)
    size = path.stat().st_size / 1024
    print(
        f"wrote {path.relative_to(root)} ({size:.0f} KB, one offline page: open it in a browser); "
        f"next: {progress.pasteable(NEXT_AFTER_PIPELINE)}"
    )
    return 0


def refresh_page(root: Path) -> None:
    """Rewrite reports/index.html after a command whose results DVC does not watch; a failure
    is a warning on stderr."""
    line = refresh(root)
    print(line, file=sys.stderr if line.startswith("warning") else sys.stdout)


def register(sub: argparse._SubParsersAction) -> None:
    page = sub.add_parser(
        "report",
        help="write reports/index.html: notebooks, metrics, plots, provenance, registry, "
        "monitoring (--list: the files under reports/)",
    )
    page.add_argument(
        "--list", action="store_true", help="list the files under reports/ instead, by folder"
    )
    page.set_defaults(func=cmd_report)
    # the old name of `report --list`, hidden (no help: not listed)
    sub.add_parser("reports").set_defaults(func=list_reports)
