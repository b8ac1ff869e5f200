"""The dispatcher's Lua scripts (``lua/*.lua``; each file's header names its KEYS and
ARGV): checks and writes that must be one step.

Every key they touch lives in the prefix's hash tag, so they stay valid on a Redis
Cluster; keys derived inside a script (a job's record, a queue stream) share that slot.
"""

from __future__ import annotations

from hookline.lua import Script

NEW_JOB = Script.load("hookline_dispatcher", "new_job")
MOVE_DUE = Script.load("hookline_dispatcher", "move_due")
MARK_STARTED = Script.load("hookline_dispatcher", "mark_started")
MARK_ENDED = Script.load("hookline_dispatcher", "mark_ended")
