"""Streaming WordCount, the contract of issue 15: `<event time> <word>` lines of the files in
config.input, counted per word in tumbling event-time windows of config.window seconds.

The watermark is the smallest, over the input files, of the largest event time read there, minus
config.disorder; a window is written when the watermark passes its end, and when the stream ends.
config.output gets part files of `window_start<TAB>word<TAB>count` lines, and late/ in it the input
lines whose window was written already (or whose event time cannot be read): every input line is
counted once, in a window or in late/.
"""

import os

from t2mpi import IWorker
from t2mpi.stream import tumbling


def parse(line):
    """(event time text, word, the line)."""
    fields = line.split(None, 1)
    return (fields[0] if fields else "", fields[1].strip() if len(fields) > 1 else "", line)


def event_time(record):
    return float(record[0])


def show_time(t):
    """A window start as written: 20 for 20.0, else Python's shortest repr (2.5)."""
    return str(int(t)) if float(t).is_integer() else repr(t)


class StreamWordCount(IWorker):
    def execute(self, ctx):
        c = ctx.config
        s = ctx.stream
        counts = (
            s.files(c["input"], follow=bool(c.get("follow", False)))
            .map(parse)
            .key_by(lambda r: r[1])
            .window(tumbling(seconds=float(c["window"])), event_time=event_time, disorder=float(c["disorder"]))
            .count()
        )
        counts.map(lambda w: f"{show_time(w[0])}\t{w[1]}\t{w[2]}").sink_files(c["output"])
        counts.late().map(lambda r: r[2]).sink_files(os.path.join(c["output"], "late"))
        return s.run(checkpoint_every=float(c.get("checkpoint_every", 5.0)), batch=int(c.get("batch", 1000)))
