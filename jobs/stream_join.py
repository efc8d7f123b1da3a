"""A windowed join of two streams: orders and their payments, matched per order id in tumbling
event-time windows.

config.orders and config.payments are folders of `<event time>,<order id>,<detail>` lines (an
order's amount; a payment's method). Every order is paired with every payment of the same order id
whose event time falls in the same window of config.window seconds (aligned to multiples from 0).
A window is written when the watermark (the smallest, over all the files of both folders, of the
largest event time read there, minus config.disorder) passes its end: one
`window_start<TAB>order<TAB>detail of the order<TAB>detail of the payment` line per pair. A line
that comes after its window was written, or whose time cannot be read, goes as it is to late/ in
config.output.
"""

import os

from t2mpi import IWorker
from t2mpi.stream import tumbling


def parse(line):
    """(event time text, order id, detail, the line)."""
    fields = [f.strip() for f in line.split(",", 2)]
    fields += [""] * (3 - len(fields))
    return (fields[0], fields[1], fields[2], line)


def show_time(t):
    return str(int(t)) if float(t).is_integer() else repr(t)


def event_time(record):
    return float(record[0])


class OrdersPayments(IWorker):
    def execute(self, ctx):
        c = ctx.config
        s = ctx.stream
        orders = s.files(c["orders"]).map(parse).key_by(lambda r: r[1])
        payments = s.files(c["payments"]).map(parse).key_by(lambda r: r[1])
        joined = orders.join(
            payments, tumbling(seconds=float(c["window"])), event_time=event_time, disorder=float(c["disorder"])
        )
        joined.map(lambda w: f"{show_time(w[0])}\t{w[1]}\t{w[2][0][2]}\t{w[2][1][2]}").sink_files(c["output"])
        late = joined.late()  # (side, record): 0 an order, 1 a payment
        late.map(lambda tagged: tagged[1][3]).sink_files(os.path.join(c["output"], "late"))
        return s.run(batch=int(c.get("batch", 1000)))
