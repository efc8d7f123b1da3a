"""Clicks per user in sliding event-time windows, with allowed lateness and a side output.

config.input holds files of `<event time>,<user>,<page>` lines. Each user's clicks are counted in
windows of config.window seconds that start every config.every seconds. A window is written when
the watermark (the smallest, over the files, of the largest event time read there, minus
config.disorder) passes its end. A click that comes later but within config.lateness seconds of
the window's end updates the window, which is written again with its new count (the last line
of a window and user is its count). Later clicks, and lines whose time cannot be read, go as
they are to late/ in config.output.
"""

import os

from t2mpi import IWorker
from t2mpi.stream import sliding


def parse(line):
    """(event time text, user, the line)."""
    fields = line.split(",")
    return (fields[0].strip(), fields[1].strip() if len(fields) > 1 else "", line)


def show_time(t):
    return str(int(t)) if float(t).is_integer() else repr(t)


class Clicks(IWorker):
    def execute(self, ctx):
        c = ctx.config
        s = ctx.stream
        windows = sliding(seconds=float(c["window"]), every=float(c["every"]))
        clicks = (
            s.files(c["input"])
            .map(parse)
            .key_by(lambda r: r[1])
            .window(
                windows,
                event_time=lambda r: float(r[0]),
                disorder=float(c["disorder"]),
                lateness=float(c["lateness"]),
            )
            .count()
        )
        clicks.map(lambda w: f"{show_time(w[0])}\t{w[1]}\t{w[2]}").sink_files(c["output"])
        clicks.late().map(lambda r: r[2]).sink_files(os.path.join(c["output"], "late"))
        return s.run(batch=int(c.get("batch", 1000)))
