"""The no-op RQ job (a module of its own: RQ's forking worker imports it in every
work horse, so it must not pull in anything heavy)."""


def noop() -> None:
    """An RQ job that does nothing."""
