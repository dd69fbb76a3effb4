"""Read scrapbook scraps from an executed notebook (scrapbook 0.5's reader breaks on pandas 2+)."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pandas as pd

PREFIX = "application/scrapbook.scrap."


def read_scraps(nb: Any) -> dict[str, Any]:
    """Scrap name -> value, from the outputs of a notebook node or a dict; later glue wins."""
    scraps: dict[str, Any] = {}
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            for mime, payload in out.get("data", {}).items():
                if not mime.startswith(PREFIX):
                    continue
                if isinstance(payload, str):
                    payload = json.loads(payload)
                data, encoder = payload.get("data"), payload.get("encoder")
                if encoder == "pandas":
                    data = pd.read_parquet(io.BytesIO(base64.b64decode(data)))
                scraps[payload["name"]] = data
    return scraps


def json_metrics(scraps: dict[str, Any]) -> dict[str, Any]:
    """The scraps that belong in a metrics JSON: numbers, strings, and dicts/lists of them."""

    def plain(v: Any) -> bool:
        if isinstance(v, bool | int | float | str) or v is None:
            return True
        if isinstance(v, list):
            return all(plain(x) for x in v)
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(x) for k, x in v.items())
        return False

    return {k: v for k, v in scraps.items() if plain(v)}
