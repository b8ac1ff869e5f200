"""The dispatcher's consumer: the shared runtime with the dispatcher as its handler.

Entries decided in Lua (new webhooks, starts, successful ends) are committed together
at the end of the batch; an entry that must read a job's record first commits what the
batch holds so far (``before_read``), so that it reads it."""

from __future__ import annotations

from collections.abc import Sequence

from hookline.consumer import Consumer, Write, Writes
from hookline.keys import GROUP_DISPATCHER
from hookline.metrics import ConsumerMetrics

from hookline_dispatcher.dispatcher import Dispatcher

DispatcherConsumer = Consumer[Sequence[Write]]


def dispatcher_consumer(
    dispatcher: Dispatcher, *, name: str, metrics: ConsumerMetrics, claim_idle: float = 30.0
) -> DispatcherConsumer:
    consumer: DispatcherConsumer = Consumer(
        dispatcher.redis,
        keys=dispatcher.keys,
        group=GROUP_DISPATCHER,
        name=name,
        streams=dispatcher.streams,
        handler=dispatcher.handle,
        batch=Writes(),
        metrics=metrics,
        claim_idle=claim_idle,
    )
    dispatcher.before_read = consumer.flush
    return consumer
