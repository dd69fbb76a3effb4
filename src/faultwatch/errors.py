"""Errors a user can act on: which file, which row, which key, what was expected."""

from __future__ import annotations


class FaultwatchError(Exception):
    """Base class: the CLI prints the message and exits non-zero, without a traceback."""


MAX_DETAIL = 400  # characters: a message quotes data (labels, values), never a whole file


def shorten(text: str, limit: int = MAX_DETAIL) -> str:
    """`text` cut to `limit` characters, with a mark that it was cut."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 15] + " ... (cut)"


class DataError(FaultwatchError):
    """A data file breaks a rule; names the file, the rows and the rule."""

    def __init__(self, file: str, rule: str, detail: str, rows: list[int] | None = None):
        self.file, self.rule, self.rows = str(file), rule, rows or []
        self.detail = shorten(detail)
        where = f"{self.file}"
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:10])
            more = f" (+{len(self.rows) - 10} more)" if len(self.rows) > 10 else ""
            where += f": row{'s' if len(self.rows) > 1 else ''} {shown}{more}"
        super().__init__(f"{where}: rule '{rule}' failed: {self.detail}")


class ParamsError(FaultwatchError):
    """params.yaml holds a bad or unknown key."""
