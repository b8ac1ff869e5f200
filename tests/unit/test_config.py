import pytest
from hookline.config import BaseSettings, load_settings
from hookline.errors import ConfigError
from hookline_ingress.settings import IngressSettings
from hookline_ingress.settings import load as load_ingress
from hookline_worker.settings import load as load_worker


def test_defaults_apply_when_the_environment_is_empty() -> None:
    settings = load_settings(BaseSettings, {})
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.prefix == "hookline"


def test_strings_become_ints_durations_and_lists() -> None:
    settings = load_ingress(
        {
            "GITHUB_WEBHOOK_SECRET": "new-secret-0123456789, old-secret-0123456789",
            "HOOKLINE_INGRESS_PORT": "8080",
            "HOOKLINE_INGRESS_DEDUPE_TTL": "3d",
        }
    )
    assert isinstance(settings, IngressSettings)
    assert settings.secrets == ["new-secret-0123456789", "old-secret-0123456789"]
    assert settings.port == 8080
    assert settings.dedupe_ttl == 3 * 86400.0


def test_flags_override_the_environment() -> None:
    settings = load_worker(
        {"HOOKLINE_WORKER_CONCURRENCY": "2"}, concurrency=8, queues=["high", "low"]
    )
    assert settings.concurrency == 8
    assert settings.queues == ["high", "low"]


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"HOOKLINE_INGRESS_PORT": "http"}, "HOOKLINE_INGRESS_PORT"),
        ({"HOOKLINE_INGRESS_PORT": "70000"}, "HOOKLINE_INGRESS_PORT"),
        ({"HOOKLINE_INGRESS_DEDUPE_TTL": "soon"}, "HOOKLINE_INGRESS_DEDUPE_TTL"),
        ({"HOOKLINE_INGRESS_MAX_BODY": "-1"}, "HOOKLINE_INGRESS_MAX_BODY"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"HOOKLINE_PREFIX": "bad prefix"}, "HOOKLINE_PREFIX"),
        ({"HOOKLINE_LOG_LEVEL": "loud"}, "HOOKLINE_LOG_LEVEL"),
        ({"HOOKLINE_STATUS_URL": "status:5002"}, "HOOKLINE_STATUS_URL"),
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_ingress({"GITHUB_WEBHOOK_SECRET": "secret-0123456789", **env})
    assert info.value.setting == setting
    assert str(info.value).startswith(setting + ":")


def test_ingress_refuses_to_start_without_a_secret() -> None:
    with pytest.raises(ConfigError, match="GITHUB_WEBHOOK_SECRET"):
        load_ingress({})


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"HOOKLINE_WORKER_QUEUES": "a b"}, "HOOKLINE_WORKER_QUEUES"),
        ({"HOOKLINE_WORKER_CONCURRENCY": "0"}, "HOOKLINE_WORKER_CONCURRENCY"),
        ({"HOOKLINE_WORKER_BURST": "maybe"}, "HOOKLINE_WORKER_BURST"),
    ],
)
def test_bad_worker_settings_name_their_variable(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_worker(env)
    assert info.value.setting == setting
