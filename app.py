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
from serving import SERVER_BACKENDS
from storage import StoreError
from training.cli import add_common_arguments
from ui import CSS, KEYS_JS, build_demo
from ui.guard import launch_options


def positive_int(text: str) -> int:
    """argparse type for counts: refuses 0, negatives and non-numbers before any weights load."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="prefloop: label, train DPO rounds, serve the new policy live.")
    add_common_arguments(parser)
    parser.add_argument("--exports", default="exports", help="Folder for exported preference pairs")
    parser.add_argument(
        "--quantization",
        default="none",
        choices=["auto", "nf4", "none"],
        help="Serving model weights; training picks NF4 on CUDA by itself",
    )
    parser.add_argument(
        "--backend",
        default="auto",
        choices=list(SERVER_BACKENDS),
        help="How pairs are sampled: auto (onnx on a CPU without native bf16, eager bf16 on one with it, the "
        "compiled static cache on CUDA), eager (torch), "
        "static, onnx (ONNX Runtime GenAI, CPU; the model is exported once beside its folder), "
        "or vllm (needs the vllm package and a CUDA GPU)",
    )
    parser.add_argument(
        "--vllm-max-lora-rank",
        type=positive_int,
        default=64,
        help="vllm backend: the largest LoRA rank it serves (train rounds with lora_r at most this)",
    )
    parser.add_argument(
        "--vllm-gpu-memory",
        type=float,
        default=0.3,
        help="vllm backend: share of GPU memory vLLM reserves; the rest stays for training rounds",
    )
    parser.add_argument("--queue-depth", type=positive_int, default=16, help="Pairs kept ready for labelers")
    parser.add_argument(
        "--sample-batch",
        type=positive_int,
        default=8,
        help="Prompts sampled together (2 completions each); at most half of --queue-depth, so half the queue "
        "stays ready while a batch samples",
    )
    parser.add_argument(
        "--keep-stale-pairs",
        action="store_true",
        help="After a round or rollback keep queued pairs of older versions (off-policy) instead of dropping them",
    )
    parser.add_argument(
        "--round-processes",
        type=positive_int,
        default=None,
        help="Processes that train each round (torchrun above 1); default: one per GPU, else 1",
    )
    parser.add_argument(
        "--max-prompt-tokens",
        type=positive_int,
        default=1024,
        help="Longest prompt, in tokens: a longer typed prompt is refused, a longer imported one keeps its end",
    )
    parser.add_argument(
        "--users",
        default=None,
        help="Users file (create it with: python -m access --users FILE add NAME --role admin): logins on, "
        "labelers label, admins also train, serve, import, export and manage users. Without it: no logins",
    )
    parser.add_argument(
        "--session-hours",
        type=float,
        default=12.0,
        help="With --users: a login lasts this long; a password reset or role change ends it at once",
    )
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
