"""The hello job's worker: says where it runs and returns twice its id."""

from t2mpi import IWorker


class Hello(IWorker):
    def execute(self, ctx):
        ctx.log.info(
            "%s from worker %d of %d on %s",
            ctx.config.get("greeting", "hello"),
            ctx.worker_id,
            ctx.num_workers,
            ctx.host,
        )
        return ctx.worker_id * 2
