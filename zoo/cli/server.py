"""``zoo serve`` and ``zoo token create|list|revoke``."""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import replace
from datetime import datetime, timezone

from zoo import errors
from zoo.errors import EXIT_OK
from zoo.settings import Settings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="run the HTTP API and its job workers")
    serve.add_argument("--host", help="address to listen on (default: ZOO_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: ZOO_PORT or 8000)")
    serve.add_argument("--workers", type=int, help="local job workers (default: ZOO_WORKERS or 1; 0: queue only)")
    serve.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))

    token = sub.add_parser("token", help="API tokens for zoo serve")
    tsub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = tsub.add_parser("create", help="create a token and print it (shown once)")
    create.add_argument("--scope", required=True, choices=("read", "write", "admin"))
    create.add_argument("--name", help="what the token is for")
    create.add_argument("--json", action="store_true")
    ls = tsub.add_parser("list", help="list tokens (never their secrets)")
    ls.add_argument("--json", action="store_true")
    revoke = tsub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("token_id")
    revoke.add_argument("--json", action="store_true")


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    try:
        import uvicorn

        from zoo.api.main import create_app
    except ImportError as exc:
        raise errors.MissingDependencyError(f"zoo serve needs the server extra ({exc.name} is missing)",
                                            hint="from a clone: ./scripts/setup.sh (the quick start's set-up "
                                                 "includes it) or pip install -e '.[server]'; from PyPI: "
                                                 "pip install 'zoo-hub[server]'") from exc
    overrides = {k: v for k, v in {"host": args.host, "port": args.port, "workers": args.workers}.items()
                 if v is not None}
    if overrides.get("workers", 0) < 0:
        raise errors.UsageError("--workers must be 0 or more")
    settings = replace(settings, **overrides)
    settings.home.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    runs = (f"{settings.workers} worker(s)" if settings.dispatcher == "local"
            else f"zoo worker processes on queue {settings.queue}")
    print(f"zoo: serving on http://{settings.host}:{settings.port} with {runs}; "
          f"store {settings.home}", file=sys.stderr, flush=True)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again for the handler it found:
    # this one makes that a normal exit (status 0, exit handlers run) instead of death by signal.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(EXIT_OK))
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level,
                timeout_graceful_shutdown=5, access_log=args.log_level == "debug")
    return EXIT_OK


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from zoo import db
    from zoo.cli.output import emit
    from zoo.service import tokens

    engine = db.get_engine(settings.database_url)
    if args.token_command == "create":
        secret, info = tokens.create_token(engine, args.scope, args.name)
        print(f"zoo: created token {info.id} ({info.scope}); it is shown only now", file=sys.stderr)
        emit(args, {**_row(info), "token": secret}, secret)
    elif args.token_command == "list":
        rows = [_row(t) for t in tokens.list_tokens(engine)]
        text = "\n".join(f"{r['id']}  {r['scope']:5}  {'REVOKED' if r['revoked_at'] else 'active ':7}  "
                         f"{r['created_at']}  {r['name'] or ''}" for r in rows)
        emit(args, {"tokens": rows}, text or "no tokens (create one with: zoo token create --scope write)")
    else:
        info = tokens.revoke_token(engine, args.token_id)
        emit(args, _row(info), f"revoked {info.id}")
    return EXIT_OK


def _row(info: object) -> dict:
    def when(t: float | None) -> str | None:
        return None if t is None else datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="seconds")

    return {"id": info.id, "scope": info.scope, "name": info.name, "created_at": when(info.created_at),
            "last_used_at": when(info.last_used_at), "revoked_at": when(info.revoked_at)}
