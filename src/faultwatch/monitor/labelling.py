"""A person's labels, sent to the service's `POST /feedback` under that person's own token
(notebooks/06_review.ipynb): the service keeps the token's name beside each label (the
`labeller` column), and `retrain --from-log --labeller NAME` can keep only theirs.

The token comes from a tokens file (faultwatch.serve.credentials: `NAME:TOKEN` lines; by
default the project's, which `faultwatch labellers add NAME` writes), picked by the labeller's
name, or from a file that holds one token alone (`faultwatch labellers add NAME > FILE`). It
is read when the first label is sent, never printed, and sent only as `Authorization: Bearer`.

A label is 1 (the fault class), 0 (healthy) or a class's name. Every refusal is a LabelError
naming the problem: a token the service does not know (403) stops at once; an unknown
prediction id (404), a second label (409) or a class the model does not have (422) names the
id, after the other labels were sent.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from faultwatch.errors import FaultwatchError
from faultwatch.paths import display_path, project_root, resolve
from faultwatch.serve.credentials import TOKEN_RULE, CredentialsError, parse

PREDICTION_ID = re.compile(r"[0-9a-f]{32}")
LOOPBACK = ("localhost", "127.0.0.1", "::1")
SOURCE = "06_review"  # the labels' `source`


class LabelError(FaultwatchError):
    """A label not recorded, or no credential to send it with: the message says why."""


class CannotLabel(LabelError):
    """No label can be sent: no usable token, a credential the service refuses, or no
    service at the url. `send` stops at once."""


def read_token(token_file: str | None, labeller: str | None, root: Path) -> tuple[str, str]:
    """(who, token): `labeller`'s token in `token_file` (None: the tokens file the project's
    servers read), or the token a file holds alone. LabelError naming the key otherwise."""
    from faultwatch.serve.launch import labeller_tokens

    path = resolve(token_file, root) if token_file else labeller_tokens(root)
    key = "review.token_file" if token_file else "review.labeller"
    shown = display_path(path, root)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise CannotLabel(
            f"{key}: {shown}: no tokens file to read ({e.strerror}); `faultwatch labellers add "
            "NAME` writes the project's, or set token_file to a file holding your token"
        ) from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if len(lines) == 1 and ":" not in lines[0]:  # one token alone
        if not TOKEN_RULE.fullmatch(lines[0]):
            raise CannotLabel(
                f"review.token_file: {shown}: not a token (16 to 256 of A-Z a-z 0-9 - . _ ~ + / =)"
            )
        return labeller or "the token's labeller", lines[0]
    try:
        tokens = parse(text, shown)
    except CredentialsError as e:
        raise CannotLabel(f"{key}: {e}") from None
    if labeller is None:
        if token_file and len(tokens) == 1:
            return next(iter(tokens.items()))
        raise CannotLabel(
            f'review.labeller: not set: name yourself (labeller = "NAME" in the parameters '
            f"cell) from {shown} ({', '.join(tokens) or 'no labeller yet'}), or set token_file"
        )
    if labeller not in tokens:
        raise CannotLabel(
            f"review.labeller: {labeller!r} has no token in {shown} (it has: "
            f"{', '.join(tokens) or 'none'}); `faultwatch labellers add {labeller}` writes one"
        )
    return labeller, tokens[labeller]


def answer_of(status: int, body: bytes) -> tuple[str, str]:
    """(rule, message) of an error answer in the service's shape ({"error", "detail"})."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return "", body.decode("utf-8", "replace").strip()[:300]
    detail = data.get("detail") if isinstance(data, dict) else None
    first = detail[0] if isinstance(detail, list) and detail else {}
    rule = str(first.get("type", "")) if isinstance(first, dict) else ""
    msg = first.get("msg") if isinstance(first, dict) else None
    return rule, str(msg or (data.get("error") if isinstance(data, dict) else data))


@dataclass
class Labeller:
    """Sends labels to `url`/feedback as `labeller` (see read_token). `classes`: (healthy,
    fault), what 0 and 1 stand for (review.classes); None: labels by their class's name."""

    url: str
    labeller: str | None = None
    token_file: str | None = None
    classes: tuple[str, str] | None = None
    root: Path | None = None
    timeout_s: float = 10.0
    _credential: tuple[str, str] | None = field(default=None, repr=False)

    @classmethod
    def from_params(cls, params: Any, classes: tuple[str, str] | None = None) -> Labeller:
        """From review params (url, labeller, token_file)."""
        return cls(params.url, params.labeller, params.token_file, classes)

    def describe(self) -> str:
        """Where the labels go and as whom (reads no token, contacts nothing)."""
        who = self.labeller or "(set labeller, or token_file)"
        fault = f"1 = {self.classes[1]}, 0 = {self.classes[0]}" if self.classes else "class names"
        return f"labels go to {self.url}/feedback as {who}; a label is {fault}"

    def credential(self) -> tuple[str, str]:
        if self._credential is None:
            root = self.root or project_root()
            self._credential = read_token(self.token_file, self.labeller, root)
        return self._credential

    def class_of(self, prediction_id: str, value: object) -> str:
        """The class name `value` stands for; LabelError naming the id otherwise."""
        if not isinstance(prediction_id, str) or not PREDICTION_ID.fullmatch(prediction_id):
            raise LabelError(
                f"{prediction_id!r}: not a prediction_id (32 hex digits, as `faultwatch review` "
                "and the queue's table show them)"
            )
        if isinstance(value, str) and value.strip() in ("0", "1"):
            value = int(value.strip())
        if isinstance(value, bool | int) and int(value) in (0, 1):
            if self.classes is None:
                raise LabelError(
                    f"{prediction_id}: label {value!r}: this window does not tell which fault "
                    "class 1 stands for: give the class's name"
                )
            return self.classes[int(value)]
        if isinstance(value, str) and value.strip():
            return value.strip()
        raise LabelError(
            f"{prediction_id}: label {value!r}: expected 1 (fault), 0 (healthy) or a class's name"
        )

    def _post(self, body: dict[str, Any]) -> tuple[int, bytes]:
        who, token = self.credential()
        req = urllib.request.Request(
            f"{self.url}/feedback",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
        )
        loopback = urlsplit(self.url).hostname in LOOPBACK
        opener = urllib.request.build_opener(
            *([urllib.request.ProxyHandler({})] if loopback else [])
        )
        try:
            with opener.open(req, timeout=self.timeout_s) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise CannotLabel(
                f"review.url: {self.url}: no service answers ({reason}); start one (`faultwatch "
                "serve`, `faultwatch deploy up`) or set url to the one that logged these"
            ) from None

    def label(self, prediction_id: str, value: object) -> str:
        """Send one label; returns what was recorded, LabelError when it was refused."""
        name = self.class_of(prediction_id, value)
        status, body = self._post({"prediction_id": prediction_id, "label": name, "source": SOURCE})
        if status == 200:
            return f"{prediction_id}: {name}, recorded as {self.credential()[0]}'s"
        rule, msg = answer_of(status, body)
        who = self.credential()[0]
        if status in (401, 403):
            hint = (
                f"the service does not know {who}'s token: is {who} in the tokens file that "
                "server reads (FAULTWATCH_LABELLER_TOKENS; `faultwatch labellers list`)?"
                if rule == "credential_refused"
                else msg
            )
            raise CannotLabel(
                f"{self.url}/feedback refused the credential ({status} {rule}): {hint}"
            )
        if status == 404:
            msg = f"not in the prediction log of the service at {self.url} ({msg})"
        elif status == 409:
            msg = f"already labelled: each prediction takes one label ({msg})"
        raise LabelError(f"{prediction_id}: {msg} ({status} {rule})")

    def send(self, answers: Mapping[str, object]) -> pd.DataFrame:
        """Send every label of `answers` (prediction_id -> 1, 0 or a class name; None: not
        yet), one request each: a table of what happened. LabelError at once for a refused
        credential; at the end, naming each, for labels the service refused."""
        rows, refused = [], []
        for pid, value in answers.items():
            if value is None:
                continue
            try:
                rows.append((pid, value, "recorded", self.label(pid, value)))
            except CannotLabel:
                raise
            except LabelError as e:
                rows.append((pid, value, "refused", str(e)))
                refused.append(str(e))
        table = pd.DataFrame(rows, columns=["prediction_id", "label", "outcome", "message"])
        if refused:
            sent = len(rows) - len(refused)
            raise LabelError(
                f"{len(refused)} of {len(rows)} labels refused ({sent} recorded): "
                + "; ".join(refused)
            )
        return table


def template(queue: pd.DataFrame) -> str:
    """A dict to paste into the labelling cell: every queued id, its value None (fill in 1 or
    0), the model's answer and probability as a comment."""
    lines = ["answers = {"]
    for r in queue.itertuples():
        lines.append(f'    "{r.prediction_id}": None,  # {r.label} p={r.probability:.3f}')
    return "\n".join([*lines, "}"])
