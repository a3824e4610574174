"""Storage and tracking URLs: read from the environment when the spec says ``env:NAME``, and
never shown with their credentials.

A spec can name a URL without holding its password (``storage = "env:CRITERIA_STORAGE"``). Every
URL that reaches the terminal, a log line, MLflow or an exported file goes through
:func:`redact`; free text that might quote one (a driver's error message) goes through
:func:`scrub`.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote, urlsplit, urlunsplit

from criteria.errors import CriteriaError

__all__ = ["ENV_PREFIX", "redact", "resolve_url", "scrub", "secrets_in", "with_default_driver"]

ENV_PREFIX = "env:"
_SECRET_QUERY = re.compile(r"(?i)((?:password|passwd|pwd|token|secret|api_key|access_key)=)([^&;]+)")


def resolve_url(value: str, key: str) -> str:
    """``env:NAME`` -> the value of the environment variable NAME; any other value as given.
    ``key`` names the spec key, for the error when the variable is not set."""
    if not value.startswith(ENV_PREFIX):
        return value
    name = value[len(ENV_PREFIX):].strip()
    url = os.environ.get(name, "").strip()
    if not url:
        raise CriteriaError(
            f'study.{key} = "{value}" reads the URL from the environment variable {name}, which is not set '
            f"here; export {name}=<url> before running (on every machine that runs a worker)"
        )
    return url


def with_default_driver(url: str) -> str:
    """``postgresql://`` (or ``postgres://``) with psycopg 3, the driver ``criteria[postgres]``
    installs; SQLAlchemy's own default would be psycopg2. A URL naming a driver is kept."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url[len(bare):]
    return url


def redact(url: str) -> str:
    """``scheme://user:secret@host/db?password=x`` -> ``scheme://user:***@host/db?password=***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if "@" not in parts.netloc and not _SECRET_QUERY.search(parts.query):
        return url  # nothing secret; urlunsplit would also drop the empty host of sqlite:////abs/path
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        host = netloc.rsplit("@", 1)[1]
        netloc = f"{user}:***@{host}"
    elif "@" in netloc:  # a token as the user part
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = _SECRET_QUERY.sub(r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secrets_in(url: str) -> list[str]:
    """The secret parts of ``url`` (password, token user part, secret query values), as written
    and percent-decoded, longest first."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = []
    if parts.password:
        found.append(parts.password)
    elif "@" in parts.netloc:
        found.append(parts.netloc.rsplit("@", 1)[0])
    found += [m.group(2) for m in _SECRET_QUERY.finditer(parts.query)]
    decoded = [unquote(s) for s in found]
    return sorted({s for s in found + decoded if s}, key=len, reverse=True)


def scrub(text: str, *urls: str) -> str:
    """``text`` with each of ``urls`` shown redacted and any of their secrets replaced by ``***``."""
    for url in urls:
        if url:
            text = text.replace(url, redact(url))
            for secret in secrets_in(url):
                text = text.replace(secret, "***")
    return text
