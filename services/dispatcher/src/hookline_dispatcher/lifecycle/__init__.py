"""The dispatcher's lifecycle rules, pure: a job's record and an event (or a command)
in, the Redis writes and the answer out. ``records`` (the job's record and the writes
decisions are made of), ``webhooks`` (a new job), ``attempts`` (an attempt ended),
``commands`` (operator commands)."""
