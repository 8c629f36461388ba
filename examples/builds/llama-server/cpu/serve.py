"""Serve a GGUF model with llama.cpp's own HTTP server (OpenAI-compatible API), through the xllamacpp CPU wheel.

The cpu variant of the example's llama-server build. xllamacpp embeds llama.cpp's C++ server; this launcher only sets
its parameters from the command line (model, bind address, port, context, threads), starts it and keeps the process
alive until systemd stops it. Endpoints are llama.cpp's: /health, /v1/models, /v1/completions, /v1/chat/completions.
Runs from the virtual environment the installer made on the host from the wheels in wheels/ (no index).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys


def _stop(signum: int, _frame: object) -> None:
    print(f"llama-server: stopping on signal {signum}", flush=True)
    os._exit(0)


def main() -> int:
    """Parse the arguments, start llama.cpp's server and wait for SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="path of the .gguf file")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="TCP port")
    parser.add_argument("--ctx", type=int, default=2048, help="context length in tokens")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: every core)")
    parser.add_argument("--parallel", type=int, default=1, help="requests decoded at once")
    parser.add_argument(
        "--chat-template",
        default="",
        help="llama.cpp built-in chat template name (e.g. gemma) for a GGUF that carries none",
    )
    args = parser.parse_args()
    if not os.path.isfile(args.model):
        print(f"llama-server: model file not found: {args.model}", file=sys.stderr)
        return 2

    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx = args.ctx
    params.n_parallel = args.parallel
    if args.chat_template:
        params.use_jinja = False  # a built-in template by name, not Jinja text
        params.chat_template = args.chat_template
    if args.threads > 0:
        params.cpuparams.n_threads = args.threads
    # Stop at once on SIGTERM: the server holds nothing that needs flushing (the model is read-only).
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server = xllamacpp.Server(params)
    print(f"llama-server: serving {os.path.basename(args.model)} on {server.listening_address}", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
