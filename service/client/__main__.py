"""``python -m service.client train request.json [--url URL] [--out result.json] [--plot curves.png]``

Runs ``POST /v1/train`` with the JSON request in the file (``-`` reads stdin), shows a
progress bar on a terminal (stderr), and writes the result as JSON (to ``--out``, else
stdout).  ``--plot`` draws the loss terms and weight norms over the steps into a PNG; it
needs matplotlib (``pip install 'penalty-service[plot]'``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import httpx

from service.client.training import TrainError, train

BAR = 30


class Bar:
    """A one-line progress bar on a terminal; silent when the stream is not a terminal."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = out.isatty()

    def __call__(self, p: dict[str, Any]) -> None:
        if not self.live:
            return
        done = int(BAR * p["step"] / max(p["steps"], 1))
        loss = p["losses"].get("total")
        self.out.write(f"\r[{'#' * done}{'.' * (BAR - done)}] {p['step']}/{p['steps']} epoch {p['epoch']}"
                       + (f" loss {loss:.6g}" if loss is not None else "") + "  ")
        self.out.flush()

    def close(self) -> None:
        """End the bar's line (once)."""
        if self.live:
            self.out.write("\n")
            self.live = False


def plot(result: dict[str, Any], path: str) -> None:
    """Loss terms (log scale) and each weight's L1 norm and sparsity over the recorded steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = result["history"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for term, values in h["losses"].items():
        ax1.plot(h["step"], values, label=term)
    ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.set_title("loss terms (before each update)")
    ax1.legend(fontsize=7)
    for name, stats in h["weights"].items():
        ax2.plot(h["step"], stats["l1"], label=f"{name} Σ|w|")
    ax2.set_xlabel("step")
    ax2.set_title("weight L1 norms")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.client", description=__doc__.split("\n\n")[1])
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("train", help="run POST /v1/train and write the result")
    cmd.add_argument("request", help="a JSON file holding the request body ('-' for stdin)")
    cmd.add_argument("--url", default="http://127.0.0.1:8000", help="the service (default %(default)s)")
    cmd.add_argument("--out", help="write the result JSON here (default: stdout)")
    cmd.add_argument("--plot", help="write a PNG of the curves here (needs matplotlib)")
    args = parser.parse_args(argv)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("--plot needs matplotlib: pip install 'penalty-service[plot]'", file=sys.stderr)
            return 2
    try:
        text = sys.stdin.read() if args.request == "-" else Path(args.request).read_text(encoding="utf-8")
        request = json.loads(text)
    except (OSError, ValueError) as exc:
        print(f"error: cannot read the request {args.request}: {exc}", file=sys.stderr)
        return 2
    bar = Bar(sys.stderr)
    try:
        result = train(args.url, request, on_progress=bar)
    except TrainError as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        bar.close()
        print(f"error: {args.url}: {exc}", file=sys.stderr)
        return 1
    bar.close()
    body = json.dumps(result)
    if args.out:
        Path(args.out).write_text(body, encoding="utf-8")
    else:
        print(body)
    if args.plot:
        plot(result, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
