"""A live view of a study: optuna-dashboard served on the study's storage (``criteria dashboard``).

optuna-dashboard reads the storage the study writes to, so it shows trials as they finish, from
every worker. It is an optional dependency (``pip install 'criteria[dashboard]'``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from criteria.errors import CriteriaError
from criteria.spec.load import Spec
from criteria.study.storage import storage_url
from criteria.study.tracking import redact

__all__ = ["Dashboard", "open_dashboard"]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the terminal is for the URL, not each request
        pass


@dataclass
class Dashboard:
    """A dashboard server bound to its port, not yet serving; :meth:`serve` blocks until stopped."""

    server: WSGIServer
    host: str
    storage: str  # redacted
    study_id: int | None  # None: the study is not in the storage yet

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.server.server_port}/dashboard/"

    @property
    def study_url(self) -> str | None:
        return None if self.study_id is None else f"{self.url}studies/{self.study_id}"

    def serve(self) -> None:
        try:
            self.server.serve_forever()
        finally:
            self.server.server_close()


def open_dashboard(spec: Spec, host: str = "127.0.0.1", port: int = 8080) -> Dashboard:
    """Bind optuna-dashboard to ``host:port`` (0: any free port) on the spec's study storage."""
    try:
        import optuna_dashboard
    except ImportError:
        raise CriteriaError("the dashboard needs optuna-dashboard: pip install 'criteria[dashboard]'") from None
    import optuna

    url = storage_url(spec)
    try:
        storage = optuna.storages.get_storage(url)
    except Exception as exc:  # SQLAlchemy's errors carry the URL, credentials included
        raise CriteriaError(f"cannot open the study storage {redact(url)}: {type(exc).__name__}") from None
    # The study may not exist yet (the dashboard started before `criteria run`): it shows up once it does.
    try:
        study_id: int | None = storage.get_study_id_from_name(spec.study.name)
    except KeyError:
        study_id = None
    try:
        server = make_server(host, port, optuna_dashboard.wsgi(storage), handler_class=_QuietHandler)
    except OSError as exc:
        raise CriteriaError(f"cannot serve the dashboard on {host}:{port}: {exc.strerror or exc}; "
                            "choose another --port (0 picks a free one)") from None
    return Dashboard(server, host, redact(url), study_id)
