"""An update's changes block handed to the workbook task after it started.

The Cambios sheet needs the drift, and the drift reads the new per-user results: the workbook used
to start only after both, and an update at 10M users then waited 5.6 s for it at the end. Now the
workbook task starts with the per-user results, streams sheet Clusters, and only then asks for the
block, which the client puts in a distributed Variable once the drift is measured (pickled: the
block has int keys, which msgpack would not keep).
"""

from __future__ import annotations

import pickle
import uuid
from dataclasses import dataclass


class DriftFailed(RuntimeError):
    """Set in place of the block when the client could not measure the drift: the workbook task stops."""


@dataclass(frozen=True)
class LaterChanges:
    """Where the workbook task finds the changes block (a Variable's name) and how long it waits for it."""

    name: str
    timeout_s: float

    def get(self) -> dict | None:
        """On the worker: the block, once the client has set it."""
        from distributed import Variable

        value = pickle.loads(Variable(self.name).get(timeout=self.timeout_s))
        if isinstance(value, DriftFailed):
            raise value
        return value


class ChangesChannel:
    """The client's end: `later` goes to the workbook task, `send` delivers the block (or the failure)."""

    def __init__(self, client, timeout_s: float = 3600.0):
        from distributed import Variable

        self.variable = Variable(f"mailseg-changes-{uuid.uuid4().hex}", client)
        self.later, self.sent = LaterChanges(self.variable.name, timeout_s), False

    def send(self, block) -> None:
        self.variable.set(pickle.dumps(block))
        self.sent = True

    def close(self, workbook) -> None:
        """Publish ended. Unsent (it failed first): the workbook task is told to stop rather than wait an
        hour. The Variable is deleted only once the task has finished or failed: a get() on a deleted one
        waits, and a cancelled future's task may still be running (cancelling does not stop a seceded
        thread). Otherwise the few kB of the value stay on the scheduler, only when a run failed."""
        if not self.sent:
            self.send(DriftFailed("the update stopped before its drift was measured"))
        if workbook.status in ("finished", "error"):
            self.variable.delete()
