"""reports/index.html: one offline page over the whole project.

It links the executed notebooks, shows every stage's metrics with the change since the last
commit, draws the plots dvc.yaml declares, gives the candidate's and the production model's
provenance, the registry's history and the latest monitoring report. Self-contained: inline
CSS, the plots as PNG data URIs, relative links to the files beside it under reports/.

Written by the `report` stage (the last of dvc.yaml) and refreshed by `faultwatch monitor`
and `faultwatch promote`, whose results (the monitor's report, the registry's git tags) DVC
does not watch. The page is not a DVC output (see dvc.yaml): refreshing it leaves
`dvc status` clean. Every input is read first; the page is replaced atomically, so a bad
input leaves the previous page in place.
"""

from __future__ import annotations

from pathlib import Path

from faultwatch.errors import FaultwatchError
from faultwatch.params import load_params
from faultwatch.paths import write_text_atomic

PAGE = Path("reports/index.html")


def build_page(root: Path) -> str:
    """The page's HTML from what the project holds now."""
    # imported here, not above: every CLI command imports this package (for PAGE and refresh)
    # at start-up, and what gathers and draws the page (the register and deploy modules, DVC)
    # costs about 0.3 s that a command which never writes the page should not pay
    from faultwatch.report_page import plots, render
    from faultwatch.report_page.gather import gather

    data = gather(root)
    drawn = [plots.draw(root, spec) for spec in plots.declared_plots(data["spec"])]
    params = root / "params.yaml"
    source = (load_params(params).get("data") or {}).get("source") if params.is_file() else None
    return render.page(data, drawn, source)


def write_page(root: Path) -> Path:
    """Build the page, then replace reports/index.html (nothing is written on an error)."""
    return write_text_atomic(root / PAGE, build_page(root))


def refresh(root: Path) -> str:
    """Rewrite the page after a command whose results DVC does not watch (the monitor's report,
    the registry's tags, the deployment); returns the line to print. Its failure is a warning:
    the command's own work is done and recorded."""
    try:
        write_page(root)
    except FaultwatchError as e:
        return f"warning: {PAGE} not refreshed: {e}"
    return f"refreshed {PAGE}"
