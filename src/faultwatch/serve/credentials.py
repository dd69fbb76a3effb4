"""Who may give labels (and, where it is set, ask for predictions): bearer tokens by name.

A tokens file holds one `NAME:TOKEN` per line (`#` comments and blank lines ignored): the NAME
is who the token stands for (1 to 64 characters of A-Z a-z 0-9 . _ @ -), recorded beside every
label given with it; the TOKEN is 16 to 256 characters of A-Z a-z 0-9 - . _ ~ + / = (an RFC
6750 bearer token). `faultwatch labellers add NAME` writes one to the project's
`.faultwatch/labellers` (mode 0600) and prints the token once.

The service reads the file named by FAULTWATCH_LABELLER_TOKENS for POST /feedback (a server
that `faultwatch serve` or `faultwatch deploy` starts gets the project's file by default) and,
when it is set, FAULTWATCH_PREDICT_TOKENS for /predict and /predict_batch (unset: open, as on
loopback). A bad file stops the server at its start, naming the file, the line and the rule;
the file is read again when it changes (a labeller added or removed needs no restart), and a
change that breaks it keeps the last good tokens, with the error in the server's log. A file
that does not exist yet holds no token: every credential is refused until it is written.

A request carries `Authorization: Bearer TOKEN`. The token is compared with every known token
in constant time (hmac.compare_digest, all of them, whichever matches), and never logged:
a missing credential is a 401 (`credential_missing`, with `WWW-Authenticate: Bearer`), an
unknown one a 403 (`credential_refused`), and a path whose tokens are not configured a 403
(`no_credentials_configured`); each is recorded in the `rejected` table and counted in
faultwatch_rejected_total like any refusal.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faultwatch.errors import FaultwatchError
from faultwatch.serve.identity import CURRENT, RequestIdentity, new_id

logger = logging.getLogger(__name__)

NAME_RULE = re.compile(r"[A-Za-z0-9._@-]{1,64}")
TOKEN_RULE = re.compile(r"[A-Za-z0-9._~+/=-]{16,256}")
PROJECT_FILE = Path(".faultwatch/labellers")  # the project's labellers, `faultwatch labellers`
CHALLENGE = (b"www-authenticate", b'Bearer realm="faultwatch"')  # a 401's header
# the variable naming each protected path's tokens file, for a refusal's message
SETTING_OF = {"/feedback": "FAULTWATCH_LABELLER_TOKENS", "/predict": "FAULTWATCH_PREDICT_TOKENS"}


class CredentialsError(FaultwatchError):
    """A tokens file that cannot be used: the message names the file, the line and the rule."""


def parse(text: str, where: str) -> dict[str, str]:
    """{name: token} of a tokens file's text; CredentialsError naming `where`:line and the
    rule at the first bad line (the token itself is never shown)."""
    found: dict[str, str] = {}
    owner: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        at = f"{where}:{number}"
        name, sep, token = (part.strip() for part in line.partition(":"))
        if not sep:
            raise CredentialsError(f"{at}: expected NAME:TOKEN (no ':' on the line)")
        if not NAME_RULE.fullmatch(name):
            raise CredentialsError(
                f"{at}: the name {name[:70]!r} must be 1 to 64 characters of A-Z a-z 0-9 . _ @ -"
            )
        if not TOKEN_RULE.fullmatch(token):
            raise CredentialsError(
                f"{at}: the token of {name!r} must be 16 to 256 characters of "
                f"A-Z a-z 0-9 - . _ ~ + / = (it has {len(token)})"
            )
        if name in found:
            raise CredentialsError(f"{at}: {name!r} is named twice (each name has one token)")
        if token in owner:
            raise CredentialsError(f"{at}: {name!r} has the token of {owner[token]!r}")
        found[name], owner[token] = token, name
    return found


def read(path: Path) -> dict[str, str]:
    """The tokens in `path`; CredentialsError when it is missing or bad."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CredentialsError(f"{path}: no such tokens file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CredentialsError(f"{path}: cannot be read as a tokens file ({e})") from None
    return parse(text, str(path))


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header, else None."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


@dataclass
class Credentials:
    """The tokens of one file, read again when the file changes (its mtime, size or inode)."""

    path: Path
    tokens: dict[str, str] = field(default_factory=dict)
    _seen: tuple[float, int, int] | None = None

    @classmethod
    def load(cls, path: Path | str) -> Credentials:
        """Read at the start: a bad file raises CredentialsError; a missing one holds no token
        yet (every request refused until `faultwatch labellers add` writes it)."""
        c = cls(Path(path))
        c._seen = c._stamp()
        if c._seen is None:
            logger.warning("%s: no tokens file yet; every credential is refused until it is", path)
        else:
            c.tokens = read(c.path)
        return c

    def _stamp(self) -> tuple[float, int, int] | None:
        try:
            s = os.stat(self.path)
        except OSError:
            return None
        return (s.st_mtime, s.st_size, s.st_ino)

    def _refresh(self) -> None:
        stamp = self._stamp()
        if stamp == self._seen:
            return
        if stamp is None:  # removed: nobody is known any more
            self.tokens = {}
        else:
            try:
                self.tokens = read(self.path)
            except CredentialsError as e:
                logger.error("%s; the tokens read before are kept", e)
        self._seen = stamp

    def known(self) -> bool:
        """Whether any token is known now."""
        self._refresh()
        return bool(self.tokens)

    def who(self, token: str) -> str | None:
        """The name whose token `token` is, else None; every known token is compared, in
        constant time each."""
        self._refresh()
        given = token.encode()
        found = None
        for name, known in self.tokens.items():
            if hmac.compare_digest(given, known.encode()):
                found = name
        return found


def new_token() -> str:
    return secrets.token_urlsafe(32)


def add(path: Path, name: str) -> str:
    """A new token for `name` appended to the tokens file `path` (made, mode 0600, when
    missing); returns the token. CredentialsError for a bad name, a name already there, or a
    bad file."""
    if not NAME_RULE.fullmatch(name):
        raise CredentialsError(
            f"the name {name[:70]!r} must be 1 to 64 characters of A-Z a-z 0-9 . _ @ -"
        )
    existing = read(path) if path.exists() else {}
    if name in existing:
        raise CredentialsError(
            f"{path}: {name!r} has a token already (faultwatch labellers remove {name} first)"
        )
    token = new_token()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        if path.stat().st_size and not path.read_text(encoding="utf-8").endswith("\n"):
            f.write("\n")
        f.write(f"{name}:{token}\n")
    return token


def remove(path: Path, name: str) -> None:
    """`name`'s line taken out of the tokens file (rewritten by a rename, mode 0600)."""
    tokens = read(path)
    if name not in tokens:
        raise CredentialsError(f"{path}: no labeller {name!r} (there are: {', '.join(tokens)})")
    kept = [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.partition(":")[0].strip() != name
    ]
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(f"{line}\n" for line in kept))
    os.replace(tmp, path)


def authenticate(
    known: Credentials | None, path: str, headers: dict[str, str]
) -> tuple[int, str, list[Any], str] | None:
    """(status, rule, loc, message) refusing a request to `path`, which takes a token (`known`;
    None where none is configured), when its `authorization` header carries no known token;
    else None, the token's name made the request's `who` (faultwatch.serve.identity). The
    token itself is never in a message."""
    loc: list[Any] = ["header", "Authorization"]
    if known is None or not known.known():
        setting = SETTING_OF.get(path, "FAULTWATCH_PREDICT_TOKENS")
        where = f"{setting} is not set" if known is None else f"{known.path} holds none"
        msg = (
            f"{path} takes a bearer token and this server knows none ({where}; "
            "`faultwatch labellers add NAME` writes the project's .faultwatch/labellers)"
        )
        return 403, "no_credentials_configured", loc, msg
    token = bearer(headers.get("authorization"))
    if token is None:
        return 401, "credential_missing", loc, f"{path} takes Authorization: Bearer TOKEN"
    who = known.who(token)
    if who is None:
        return 403, "credential_refused", loc, "the token is not one this server knows"
    CURRENT.set(dataclasses.replace(CURRENT.get() or RequestIdentity(new_id()), who=who))
    return None
