"""hookline worker: runs pipeline jobs from ``job.queued.<queue>`` streams."""
