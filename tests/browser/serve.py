"""A real ``updraft server`` process for the browser tests, with tokens of every role.

It runs the app ``create_app`` builds under uvicorn, exactly as ``updraft server`` does, then makes the tokens
in ``--tokens`` (records written by the test: ids and hashes, never tokens) known to the server:

* when the server has wired its own :class:`~updraft.security.http.Guard` (``app.state.guard``) over tokens
  kept in its store, the records are put in the store, and the dashboard asks that Guard;
* until then, the API's Guard class is installed on ``app.state.guard`` over these records, so the dashboard
  enforces the API's roles all the same.
"""

from __future__ import annotations

import argparse
import json
import time

import uvicorn

from updraft import settings as s
from updraft.control.server import create_app
from updraft.observe.logs import setup_logging
from updraft.security.http import Guard
from updraft.security.tokens import TokenRecord


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--tokens", required=True)
    args = parser.parse_args()
    cfg = s.load(s.ServerSettings, args.config, flags={"port": args.port, "data_dir": args.data_dir})
    setup_logging(cfg.log_format, cfg.log_level, component="server")
    app = create_app(cfg)
    with open(args.tokens) as f:
        records = [TokenRecord.model_validate(r) for r in json.load(f)]
    store = app.state.service.store
    if getattr(app.state, "guard", None) is not None and hasattr(store, "put_token"):
        for record in records:
            store.put_token(record)
    else:
        table = {r.id: r for r in records}
        app.state.guard = Guard(table.get, time.time)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=1, log_config=None)


if __name__ == "__main__":
    main()
