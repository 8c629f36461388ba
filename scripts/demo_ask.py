"""make demo's last step: ask the installed model a question over the enclave address, print the answer and timings.

Usage: python scripts/demo_ask.py HOST:PORT "QUESTION"

A streamed OpenAI-style completion (llama.cpp's /v1/completions, ``stream: true``): the time to first token is the
time until the first generated text arrives; the rest arrive as they are decoded. The model is Gemma 3 270M, a small
base model, so the question is asked as a "Question: ... Answer:" prompt and the answer is cut at the first newline.
Standard library only; the address is the one the demo's inventory gave the service (never a proxy).
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request


def ask(address: str, question: str, max_tokens: int = 24) -> dict[str, object]:
    """Stream the answer to ``question`` from ``http://address``; return answer, ttft, tokens and tokens/s."""
    body = {
        "prompt": f"Question: {question}\nAnswer:",
        "max_tokens": max_tokens,
        "temperature": 0,
        "stop": ["\n"],
        "stream": True,
    }
    req = urllib.request.Request(  # noqa: S310 - http:// to the enclave address the demo booted
        f"http://{address}/v1/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    start = time.monotonic()
    first: float | None = None
    pieces: list[str] = []
    with opener.open(req, timeout=300) as resp:
        for raw in resp:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            text = json.loads(line[5:])["choices"][0].get("text", "")
            if text and first is None:
                first = time.monotonic() - start
            pieces.append(text)
    total = time.monotonic() - start
    tokens = sum(1 for p in pieces if p)
    decode = total - (first or total)
    return {
        "answer": "".join(pieces).strip(),
        "ttft_s": round(first or total, 3),
        "tokens": tokens,
        "tokens_per_s": round((tokens - 1) / decode, 1) if tokens > 1 and decode > 0 else None,
    }


def main(argv: list[str]) -> int:
    """Ask, print, exit 0 when the model answered with text."""
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    address, question = argv
    result = ask(address, question)
    print(f"question:            {question}")
    print(f"answer:              {result['answer']}")
    print(f"time to first token: {result['ttft_s']} s  ({result['tokens']} tokens, {result['tokens_per_s']} tokens/s)")
    return 0 if result["answer"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
