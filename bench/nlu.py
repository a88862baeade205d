"""Offline NLU speed: MiniLM sentence encoding, intent classification, slot extraction.

    .venv/bin/python bench/nlu.py
    .venv/bin/python bench/nlu.py --repeats 20 --json out.json

Encoding: `MiniLMEmbedder.encode([sentence])` for each of 30 call-centre utterances (3 to 16
words), alone as the classifier does it, `--repeats` times each; the figures are ms per
sentence, p50/p95/max over every timed call. "batch" encodes all of them in one call (as the
classifier does its examples once) and divides by their number. "load" is making the
embedder (reading the safetensors file and the tokenizer).

Classification: `IntentClassifier.classify` on each utterance against 8 intents with 4
examples each, without an embedder (keyword and fuzzy matching only) and with MiniLM (the
utterance is encoded once per call; the examples were encoded when the classifier was made).
Slot extraction: `extract` over 24 slot inputs of every kind. Both in ms per call,
p50/p95/max. "hits" counts utterances whose intent the classifier got right (the expected
intents are listed beside the utterances below; 4 are unrelated and expect none).

Timings are wall-clock (`perf_counter`), one thread of Python calling, after one untimed
warm-up pass. numpy's BLAS may use several threads inside a matrix product; on a busy machine
those threads wait for each other, so compare with `OPENBLAS_NUM_THREADS=1` (the header
shows the setting).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from machine import cpu_model
from opusagent.agent.nlu import IntentClassifier, MiniLMEmbedder, SlotRules, extract

INTENTS = {
    "agent/human": ["talk to a human", "speak to a representative", "agent", "operator"],
    "billing": ["question about my bill", "billing", "i was overcharged", "pay my bill"],
    "balance": ["check my balance", "how much money do i have", "account balance", "balance"],
    "cancel": ["cancel my subscription", "i want to cancel", "close my account", "cancel"],
    "card/lost": ["i lost my card", "my card was stolen", "report a lost card", "lost card"],
    "address": ["change my address", "i moved", "update my address", "new address"],
    "hours": ["what are your opening hours", "when are you open", "hours", "are you open"],
    "goodbye": ["goodbye", "bye", "that's all", "hang up"],
}
UTTERANCES: list[tuple[str, str | None]] = [
    ("I want to talk to a real person", "agent/human"),
    ("can you put me through to someone", "agent/human"),
    ("operator", "agent/human"),
    ("representative please", "agent/human"),
    ("I have a question about a charge on my bill", "billing"),
    ("I think they charged me twice this month", "billing"),
    ("why is my invoice so much higher than usual", "billing"),
    ("how much money is in my checking account right now", "balance"),
    ("what's my balance", "balance"),
    ("can you tell me how much I have left on the account", "balance"),
    ("I'd like to end my membership", "cancel"),
    ("please cancel my plan", "cancel"),
    ("I don't want the service anymore, close it", "cancel"),
    ("my credit card is missing", "card/lost"),
    ("someone stole my wallet with my debit card in it", "card/lost"),
    ("I can't find my card anywhere", "card/lost"),
    ("I moved to a new place last week", "address"),
    ("I need to update where I live", "address"),
    ("my address changed", "address"),
    ("what time do you close today", "hours"),
    ("are you open on sundays", "hours"),
    ("when does the branch open", "hours"),
    ("that's everything, thanks, bye", "goodbye"),
    ("okay goodbye", "goodbye"),
    ("I'm done, thank you", "goodbye"),
    ("see you later", "goodbye"),
    ("what's the weather like in paris", None),
    ("tell me a joke", None),
    ("the quick brown fox jumps over the lazy dog", None),
    ("my cat likes to sleep on the keyboard when I work from home", None),
]
TODAY = datetime.date(2026, 3, 2)
SLOTS: list[tuple[SlotRules, str, str]] = [
    (SlotRules("digits", min_length=16, max_length=16), "four two one seven " * 4, ""),
    (SlotRules("digits", min_length=4, max_length=4), "my pin is four two one seven", ""),
    (SlotRules("digits", min_length=4, max_length=4), "", "4217#"),
    (SlotRules("number"), "twenty five", ""),
    (SlotRules("number"), "four, no, five", ""),
    (SlotRules("amount"), "twenty five dollars and fifty cents", ""),
    (SlotRules("amount"), "$1,234.56", ""),
    (SlotRules("amount"), "a dollar fifty", ""),
    (SlotRules("date"), "march third twenty twenty six", ""),
    (SlotRules("date"), "next monday", ""),
    (SlotRules("date"), "2026-03-03", ""),
    (SlotRules("time"), "three thirty in the afternoon", ""),
    (SlotRules("time"), "quarter to four", ""),
    (SlotRules("yes_no"), "yeah that's right", ""),
    (SlotRules("yes_no"), "no not really", ""),
    (SlotRules("choice", options={"checking": ["checking account"], "savings": []}), "savings", ""),
    (SlotRules("choice", options={"checking": [], "savings": []}), "the second one", ""),
    (SlotRules("phone"), "plus one five five five one two three four five six seven", ""),
    (SlotRules("phone"), "(555) 123-4567", ""),
    (SlotRules("email"), "john dot smith at example dot com", ""),
    (SlotRules("email"), "John.Smith@Example.com", ""),
    (SlotRules("name"), "my name is mary-jane o'brien", ""),
    (SlotRules("text"), "my card was eaten by the machine", ""),
    (SlotRules("digits"), "I don't remember it", ""),
]


def _timed(call: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return times


def _each(call: Callable[[str], object], inputs: Sequence[str], repeats: int) -> list[float]:
    """ms per call of `call` on every input in turn, `repeats` passes (never the same input
    twice running, so nothing cached from the call before is reused)."""
    times = []
    for _ in range(repeats):
        for item in inputs:
            start = time.perf_counter()
            call(item)
            times.append((time.perf_counter() - start) * 1000)
    return times


def _summary(times_ms: Sequence[float]) -> dict[str, float]:
    ordered = sorted(times_ms)
    return {
        "p50": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "max": ordered[-1],
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per input")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)
    blas_threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    console.print(
        f"{cpu_model()}, Python {platform.python_version()}, repeats {args.repeats}, "
        f"OPENBLAS_NUM_THREADS {blas_threads}"
    )

    start = time.perf_counter()
    embedder = MiniLMEmbedder()
    load_ms = (time.perf_counter() - start) * 1000
    sentences = [text for text, _ in UTTERANCES]
    embedder.encode(sentences)  # warm-up
    alone = _each(lambda s: embedder.encode([s]), sentences, args.repeats)
    batch = [t / len(sentences) for t in _timed(lambda: embedder.encode(sentences), args.repeats)]

    lexical = IntentClassifier(INTENTS)
    semantic = IntentClassifier(INTENTS, embedder=embedder)
    figures: dict[str, dict[str, float]] = {
        "encode, one sentence": _summary(alone),
        "encode, batch of 30 (per sentence)": _summary(batch),
    }
    hits: dict[str, int] = {}
    for label, classifier in (
        ("classify, keyword+fuzzy", lexical),
        ("classify, + MiniLM", semantic),
    ):
        results = {text: classifier.classify(text) for text in sentences}  # warm-up
        hits[label] = sum(
            (m.name if m else None) == expected
            for (text, expected), m in zip(UTTERANCES, results.values(), strict=True)
        )
        figures[label] = _summary(_each(classifier.classify, sentences, args.repeats))
    for rules, text, keys in SLOTS:
        extract(rules, text, keys, today=TODAY)  # warm-up
    figures["extract, one slot"] = _summary(
        [
            t
            for rules, text, keys in SLOTS
            for t in _timed(
                lambda r=rules, x=text, k=keys: extract(r, x, k, today=TODAY), args.repeats
            )
        ]
    )

    table = Table(title=f"Offline NLU, ms per call (MiniLM load {load_ms:.0f} ms)")
    for column in ("what", "p50", "p95", "max", "hits"):
        table.add_column(column, justify="left" if column == "what" else "right")
    for label, summary in figures.items():
        hit = f"{hits[label]}/{len(UTTERANCES)}" if label in hits else ""
        table.add_row(label, *(f"{summary[k]:.3f}" for k in ("p50", "p95", "max")), hit)
    console.print(table)
    for label, classifier in (("keyword+fuzzy", lexical), ("+ MiniLM", semantic)):
        console.print(f"misses, {label}:")
        for text, expected in UTTERANCES:
            match = classifier.classify(text)
            got = match.name if match else None
            if got != expected:
                console.print(f"  {text!r}: {got} (expected {expected})")

    if args.json is not None:
        report = {
            "cpu": cpu_model(),
            "python": platform.python_version(),
            "repeats": args.repeats,
            "openblas_num_threads": blas_threads,
            "load_ms": load_ms,
            "figures_ms": figures,
            "hits": hits,
            "utterances": len(UTTERANCES),
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
