"""The one error hierarchy of hookline."""


class HooklineError(Exception):
    """Base of every error hookline raises on purpose."""


class ConfigError(HooklineError):
    """A setting is missing or invalid; the message names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


class PipelineError(HooklineError):
    """A pipeline could not be resolved or run."""
