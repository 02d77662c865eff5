"""prefloop's web app: label pairs from the current policy, train DPO rounds, compare versions.

    python app.py                       # bundled SmolLM2-135M-Instruct, data in ./data, rounds in ./runs
    python app.py --model path/or/hub-id --db data/other.duckdb --port 7860
    python app.py --host 0.0.0.0 --users users.json   # a team: logins (python -m access add ...) and roles

A launcher: it parses the flags, opens the services (services/) and serves the UI (ui/).
"""

from __future__ import annotations

import argparse
import signal
import sys

from access import exposure_warning
from models import ModelLoadError
from services import ServiceConfig, open_services
from storage import StoreError
from training.cli import COMMON_FIELDS, add_common_arguments, add_config_arguments, positive_int
from ui import CSS, KEYS_JS, build_demo
from ui.guard import launch_options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The services' flags, one per `ServiceConfig` field (the paths the training CLI shares first), then the web
    server's own."""
    parser = argparse.ArgumentParser(description="prefloop: label, train DPO rounds, serve the new policy live.")
    add_common_arguments(parser)
    add_config_arguments(parser, ServiceConfig, skip=COMMON_FIELDS)
    parser.add_argument(
        "--max-upload-mb",
        type=positive_int,
        default=100,
        help="Largest file anyone may upload (a prompts file to import), in MB; larger ones are refused",
    )
    parser.add_argument(
        "--allowed-origins",
        nargs="*",
        default=[],
        help="Web origins besides the app's own that may use it, e.g. https://prefloop.example.org behind a TLS "
        "reverse proxy; requests from any other site's pages get 403",
    )
    parser.add_argument(
        "--allowed-hosts",
        nargs="*",
        default=[],
        help="Names (besides IP addresses and localhost) the app answers to in the Host header; the hosts of "
        "--allowed-origins are added. Other names get 403 (DNS rebinding)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on; 0.0.0.0 opens it to the network")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--no-browser", action="store_true", help="Do not open a browser tab")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    try:
        services = open_services(ServiceConfig.from_args(args))
    except (StoreError, ModelLoadError, ValueError, ImportError) as err:
        sys.exit(f"prefloop: {err}")
    warning = exposure_warning(args.host, services.access)
    if warning:
        print(warning, file=sys.stderr)
    demo = build_demo(services)
    demo.queue(default_concurrency_limit=8)
    services.exports.folder.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C works even if started with SIGINT ignored
    try:  # Ctrl-C: gradio closes its server and returns here
        demo.launch(
            server_name=args.host,
            server_port=args.port,
            inbrowser=not args.no_browser,
            head=KEYS_JS,
            css=CSS,
            show_error=True,
            max_file_size=f"{args.max_upload_mb}mb",  # larger uploads get 413 before they are stored
            **launch_options(services, args.allowed_origins, args.allowed_hosts),  # origins, logins, exports
        )
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not break the (short) clean-up
        services.close()  # cancel a running round, stop the sampler between batches, close the database
    print("prefloop stopped.", file=sys.stderr)


if __name__ == "__main__":
    main(parse_args())
