import pytest
from hookline.keys import Keys


def test_every_key_shares_one_cluster_hash_tag() -> None:
    keys = Keys("acme")
    names = [
        keys.webhook_received,
        keys.job_queued("q"),
        keys.job_started,
        keys.job_finished,
        keys.dead_letter,
        keys.delivery("d"),
        keys.dispatcher_job("j"),
        keys.cancel("j"),
        keys.delayed,
        keys.commands,
        keys.workers,
        keys.worker("w"),
        keys.queues,
        keys.metrics_leader,
    ]
    assert all(name.startswith("{acme}:") for name in names)


def test_queue_name_round_trips_through_its_stream() -> None:
    keys = Keys()
    assert keys.queue_of_stream(keys.job_queued("high")) == "high"
    assert keys.queue_of_stream(keys.job_started) is None


@pytest.mark.parametrize("prefix", ["", "a}b", "a{b", "with space", "x" * 65])
def test_prefixes_that_would_break_the_hash_tag_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="invalid key prefix"):
        Keys(prefix)
