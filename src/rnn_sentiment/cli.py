"""`rnn-sentiment`: the command line. Each subcommand lives in the module that does its work and
is imported only when called, so `rnn-sentiment bptt-check` does not pay for torch or MLflow."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "predict": ("rnn_sentiment.predict", "main", "sentiment of reviews given as text or a file"),
    "neighbours": ("rnn_sentiment.embeddings", "main", "nearest words in a model's embedding"),
    "preset": ("rnn_sentiment.presets", "main", "print a named configuration as dvc exp -S args"),
    "bptt-check": ("rnn_sentiment.bptt", "check_main", "hand-written BPTT gradients vs autograd"),
    "bptt-demo": ("rnn_sentiment.bptt", "demo_main", "the tutorial's worked BPTT example"),
}


def usage() -> str:
    lines = ["usage: rnn-sentiment COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<12} {help_text}" for name, (_, _, help_text) in COMMANDS.items()]
    lines += ["", "Run `rnn-sentiment COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(
            f"error: unknown command '{argv[0]}'; choose one of {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    module, function, _ = COMMANDS[argv[0]]
    return getattr(importlib.import_module(module), function)(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
