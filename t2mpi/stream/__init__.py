"""t2mpi.stream: the streaming dataflow API (a worker's ctx.stream, t2mpi.stream.api.StreamContext).

Only the windowers are named here (`from t2mpi.stream import tumbling`): a small module of pure
classes, so importing this package costs a rank next to nothing.
"""

from .windows import count_window, session, sliding, tumbling

__all__ = ["count_window", "session", "sliding", "tumbling"]
