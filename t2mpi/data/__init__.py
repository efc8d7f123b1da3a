"""t2mpi.data: the batch dataflow API (Twister2's TSets in native Python over mpi4py).

Empty on purpose, so that importing it costs a rank nothing: the entry is `t2mpi.data.api.Data`
(a worker gets one as `ctx.data`).
"""
