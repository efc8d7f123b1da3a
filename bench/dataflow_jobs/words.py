"""The WordCount input of bench/dataflow.py and its answer, shared by every side (numpy only to make
the input, so that the counting sides do not pay for importing it).

The input: UTF-8 text, words drawn Zipf-like (p ~ 1/rank) over a fixed vocabulary of lowercase
words, a newline after each word with probability 1/10 (~10 words a line). The answer: the ten most
frequent (word, count), ties broken by the word.
"""

from __future__ import annotations

import heapq
import resource

VOCABULARY = 100_000


def vocabulary(rng, size: int = VOCABULARY) -> list[str]:
    """`size` distinct lowercase words of 2..12 letters."""
    import numpy as np

    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    words: dict[str, None] = {}
    while len(words) < size:
        lengths = rng.integers(2, 13, size=size)
        chars = letters[rng.integers(0, 26, size=int(lengths.sum()))].tobytes().decode("ascii")
        starts = np.concatenate([[0], np.cumsum(lengths)])
        for a, b in zip(starts[:-1].tolist(), starts[1:].tolist()):
            words[chars[a:b]] = None
            if len(words) == size:
                break
    return list(words)


def make_text(path: str, words: int, seed: int, chunk: int = 1_000_000) -> int:
    """Write `words` Zipf-distributed words to path; returns the file's size in bytes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    vocab = np.array(vocabulary(rng), dtype=object)
    p = 1.0 / np.arange(1, len(vocab) + 1)
    p /= p.sum()
    size = 0
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, words, chunk):
            m = min(chunk, words - start)
            tokens = np.empty(2 * m, dtype=object)
            tokens[0::2] = vocab[rng.choice(len(vocab), size=m, p=p)]
            tokens[1::2] = np.where(rng.random(m) < 0.1, "\n", " ")
            tokens[-1] = "\n"
            size += f.write("".join(tokens.tolist()))
    return size


def top_key(kv: tuple[str, int]) -> tuple[int, str]:
    return kv[1], kv[0]


def top10(items) -> list[tuple[str, int]]:
    return [(w, int(c)) for w, c in heapq.nlargest(10, items, key=top_key)]


def peak_rss_mib() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
