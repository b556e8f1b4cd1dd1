"""Which Dagster executor runs the steps of a run: one process, one process per step, or Celery workers.

`ExecutionSettings` is the `[execution]` section of aiobs.toml (environment: `AIOBS_EXECUTION__EXECUTOR`,
`AIOBS_EXECUTION__MAX_CONCURRENT`, `AIOBS_EXECUTION__CELERY_BROKER`, `AIOBS_EXECUTION__CELERY_BACKEND`,
`AIOBS_EXECUTION__CELERY_QUEUE`);
`executor_for(settings)` turns it into the executor definition `definitions.py` hands to `Definitions`.

Past one machine the steps go to Celery workers (`dagster-celery`): the run's process only queues each step
on the broker and waits; any worker listening on the queue runs it and writes its events to the shared
instance (PostgreSQL storage), so workers can sit on other machines as long as they reach the broker, the
instance database and the warehouse. Dagster is imported only inside `executor_for`, because the settings
module (and with it the CLI) imports this one.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

if TYPE_CHECKING:
    from dagster import ExecutorDefinition

EXECUTORS = ("multiprocess", "in_process", "celery")
BROKER_ENV = "AIOBS_EXECUTION__CELERY_BROKER"
BACKEND_ENV = "AIOBS_EXECUTION__CELERY_BACKEND"
QUEUE_ENV = "AIOBS_EXECUTION__CELERY_QUEUE"
# dagster-celery's own default queue name.
DEFAULT_QUEUE = "dagster"
DEFAULT_BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
# The RPC backend sends results back over the AMQP broker, so RabbitMQ alone is enough; with a Redis
# broker use a Redis backend too (e.g. redis://127.0.0.1:6379/1).
DEFAULT_BACKEND = "rpc://"
_SCHEMES = ("amqp://", "pyamqp://", "amqps://", "redis://", "rediss://", "sqs://", "rpc://", "db+")


class ExecutionSettings(BaseModel):
    """How a run's steps are executed: in the run's process, one process per step, or on Celery workers."""

    # Broker URLs carry passwords: validation errors must not echo the value.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    executor: Literal["multiprocess", "in_process", "celery"] = Field(
        default="multiprocess",
        description="multiprocess: each step in a child process of the run (one machine, the default); "
                    "in_process: every step in the run's process; celery: steps queued to Celery workers.")
    max_concurrent: int | None = Field(
        default=None, ge=1, description="Steps of one run executing at once on the multiprocess executor; "
                                        "None = the machine's CPU count.")
    celery_broker: SecretStr = Field(
        default=SecretStr(DEFAULT_BROKER),
        description="Celery broker URL (RabbitMQ pyamqp:// or Redis redis://); set AIOBS_EXECUTION__CELERY_BROKER.")
    celery_backend: SecretStr = Field(
        default=SecretStr(DEFAULT_BACKEND),
        description="Celery result backend URL (rpc:// with RabbitMQ, redis:// with Redis); set "
                    "AIOBS_EXECUTION__CELERY_BACKEND.")

    celery_queue: str = Field(
        default=DEFAULT_QUEUE, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$",
        description="Celery queue the steps are sent to; start workers with `-q` on the same name. Deployments "
                    "(or test runs) sharing one broker need queues of their own, or one's workers run the "
                    "other's steps.")

    @field_validator("celery_broker", "celery_backend")
    @classmethod
    def _known_scheme(cls, value: SecretStr, info: Any) -> SecretStr:
        url = value.get_secret_value().strip()
        if not url.startswith(_SCHEMES):
            # The URL may hold a password, so only its scheme is shown.
            scheme = url.split("://", 1)[0] if "://" in url else "(none)"
            raise ValueError(f"execution.{info.field_name} must be a Celery URL starting with one of "
                             f"{', '.join(_SCHEMES)}; got scheme {scheme!r}")
        return SecretStr(url)


def _url_source(env_name: str, secret: SecretStr) -> str | dict[str, str]:
    """The URL as a StringSource: `{"env": NAME}` when it came from the environment, so it is never stored."""
    if os.environ.get(env_name):
        return {"env": env_name}
    return secret.get_secret_value()


def celery_config(settings: ExecutionSettings) -> dict[str, Any]:
    """The dagster-celery executor config (broker, backend, and the queue unless it is Celery's default)."""
    config: dict[str, Any] = {"broker": _url_source(BROKER_ENV, settings.celery_broker),
                              "backend": _url_source(BACKEND_ENV, settings.celery_backend)}
    if settings.celery_queue != DEFAULT_QUEUE:
        config["config_source"] = {"task_default_queue": settings.celery_queue}
    return config


def executor_for(settings: Any) -> ExecutorDefinition:
    """The Dagster executor definition the settings select (`settings.execution`, or an ExecutionSettings)."""
    from dagster import in_process_executor, multiprocess_executor  # noqa: PLC0415 - see module docstring

    execution = settings if isinstance(settings, ExecutionSettings) else settings.execution
    if execution.executor == "in_process":
        return in_process_executor
    if execution.executor == "multiprocess":
        if execution.max_concurrent is None:
            return multiprocess_executor
        return multiprocess_executor.configured({"max_concurrent": execution.max_concurrent})
    from dagster_celery import celery_executor  # noqa: PLC0415 - optional until Celery is used

    return celery_executor.configured(celery_config(execution), name="celery")
