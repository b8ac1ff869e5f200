"""The dispatcher's consumer loop: the shared loop, with batches split where an entry
must read what the entries before it wrote."""

from __future__ import annotations

import asyncio

from hookline.consumer import Acks, Consumer, Entry, Op, commit

from hookline_dispatcher.dispatcher import Dispatcher


class DispatcherConsumer(Consumer):
    """The consumer loop with two changes. Entries decided in Lua (new webhooks, starts,
    successful ends) are committed together at the end of the batch, but an entry that
    reads a job's record first commits what the batch holds so far, so that it reads
    it. And the dispatcher learns which new jobs a commit really wrote (metrics)."""

    def attach(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self._ops: list[Op] = []
        self._acks = Acks(self.group)
        dispatcher.before_read = self.flush

    async def process(self, entries: list[Entry]) -> None:
        self._ops, self._acks = [], Acks(self.group)
        for entry in entries:
            result = await self.handle_one(entry)
            if result is None:
                continue
            self._ops.extend(result)
            self._acks.add(entry)
        await self.flush()
        self.state.handled += len(entries)

    async def flush(self) -> None:
        """Commit the writes and acknowledgements held so far."""
        ops, acks = self._ops, self._acks
        self._ops, self._acks = [], Acks(self.group)
        if not ops and not acks:
            return
        replies = None
        try:
            replies = await asyncio.shield(commit(self.redis, ops, acks))
        finally:
            self.dispatcher.committed(ops, replies)
