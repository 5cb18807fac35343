"""The composition root: the one place that chooses and builds adapters."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from dependency_injector import containers, providers

from adapters.brokers.memory import MemoryBroker
from adapters.brokers.rabbitmq import RabbitMqConsumer, RabbitMqPublisher
from adapters.codecs import CursorCodec
from adapters.cron import CronRecurrence
from adapters.handlers.builtin import BUILTIN_KINDS
from adapters.handlers.http import HttpKindConfig, http_kind
from adapters.handlers.loader import build_registry
from adapters.observability.prometheus import PrometheusMetrics
from adapters.storage.memory import MemoryStorage
from adapters.storage.sql import SqlStorage
from adapters.system import SystemClock, Uuid7Generator, new_worker_id
from application.callbacks import Callbacks
from application.completions import Completions
from application.group_commit import GroupCommit
from application.recorder import TaskRecorder
from application.submissions import NewTasks, TaskDefaults
from application.use_cases.cancel_task import CancelTaskHandler
from application.use_cases.cancel_tasks import CancelTasksHandler
from application.use_cases.check_readiness import CheckReadinessHandler
from application.use_cases.create_schedule import CreateScheduleHandler
from application.use_cases.delete_task import DeleteTaskHandler
from application.use_cases.get_schedule_lag import GetScheduleLagHandler
from application.use_cases.get_stats import GetStatsHandler
from application.use_cases.get_task import GetTaskHandler
from application.use_cases.heartbeat_worker import HeartbeatWorkerHandler, SignOffWorkerHandler
from application.use_cases.list_tasks import ListTasksHandler
from application.use_cases.list_workers import ListWorkersHandler
from application.use_cases.manage_schedules import ManageSchedules
from application.use_cases.observe_deployment import ObserveDeploymentHandler
from application.use_cases.process_delivery import ProcessDeliveryHandler
from application.use_cases.promote_due_tasks import PromoteDueTasksHandler
from application.use_cases.prune_outbox import PruneOutboxHandler
from application.use_cases.prune_tasks import PruneTasksHandler
from application.use_cases.publish_committed import PublishCommittedHandler
from application.use_cases.recover_stalled_tasks import RecoverStalledTasksHandler
from application.use_cases.relay_outbox import RelayOutboxHandler
from application.use_cases.retry_task import RetryTaskHandler
from application.use_cases.retry_tasks import RetryTasksHandler
from application.use_cases.run_due_schedules import RunDueSchedulesHandler
from application.use_cases.run_task import RunTaskHandler
from application.use_cases.submit_task import SubmitTaskHandler
from application.use_cases.submit_task_batch import SubmitTaskBatchHandler
from domain.values import RetryPolicy
from entrypoints.settings import Settings, url_scheme

if TYPE_CHECKING:
    from adapters.brokers.pubsub import PubSubConsumer, PubSubPublisher
    from adapters.storage.mongo import MongoStorage
    from entrypoints.webhook.auth import PushAuthenticator


class UnsupportedUrl(ValueError):
    pass


# The adapters of MongoDB and Pub/Sub, and the push webhook's token check, bring large
# client libraries (tens of MB each): they are imported only by a process that uses them.


def _mongo_storage(url: str) -> MongoStorage:
    from adapters.storage.mongo import MongoStorage

    return MongoStorage.from_url(url)


def _pubsub_publisher(
    url: str, create: bool, events: bool, queues: tuple[str, ...]
) -> PubSubPublisher:
    from adapters.brokers.pubsub import PubSubPublisher

    return PubSubPublisher.from_url(url, create, events, queues)


def _pubsub_consumer(
    url: str, create: bool, events: bool, queues: tuple[str, ...], consumed: tuple[str, ...]
) -> PubSubConsumer:
    from adapters.brokers.pubsub import PubSubConsumer

    return PubSubConsumer.from_url(url, create, events, queues, consumed)


def _push_authenticator(**options: Any) -> PushAuthenticator:
    from entrypoints.webhook.auth import PushAuthenticator

    return PushAuthenticator(**options)


def _seconds(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def _task_defaults(settings: Settings) -> TaskDefaults:
    return TaskDefaults(
        max_attempts=settings.default_max_attempts,
        timeout=timedelta(seconds=settings.default_timeout_seconds),
        retry_base_delay=timedelta(seconds=settings.retry_base_seconds),
        retry_max_delay=timedelta(seconds=settings.retry_max_seconds),
        queues=tuple(settings.queues),
    )


def _statistics_lease(settings: Settings) -> timedelta:
    """Three of the holder's passes: a pass that runs late keeps the lease, and a holder
    killed without releasing it is replaced within four."""
    return timedelta(seconds=3 * settings.stats_interval_seconds)


def _callback_backoff(settings: Settings) -> RetryPolicy:
    """The deployment's backoff between attempts, for callback deliveries."""
    defaults = _task_defaults(settings)
    return RetryPolicy(base_delay=defaults.retry_base_delay, max_delay=defaults.retry_max_delay)


def _http_kind_config(settings: Settings) -> HttpKindConfig:
    return HttpKindConfig(
        allowed_hosts=tuple(settings.http_allowed_hosts),
        allow_private_networks=settings.http_allow_private_networks,
        max_response_bytes=settings.http_max_response_bytes,
        callback_secrets=tuple(secret.get_secret_value() for secret in settings.callback_secrets),
    )


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)

    clock = providers.Singleton(SystemClock)
    ids = providers.Singleton(Uuid7Generator)
    worker_id = providers.Singleton(new_worker_id)

    # Deliveries running together claim and record their tasks in shared units of work:
    # the engine's default pool serves any worker concurrency.
    sql_storage = providers.Singleton(
        SqlStorage.from_url,
        settings.provided.storage_url,
        keep_sent=settings.provided.keeps_sent_messages,
    )
    storage = providers.Selector(
        providers.Callable(url_scheme, settings.provided.storage_url),
        memory=providers.Singleton(MemoryStorage),
        sqlite=sql_storage,
        postgresql=sql_storage,
        # url_scheme reads mongodb+srv:// as mongodb: the driver resolves the SRV record.
        mongodb=providers.Singleton(_mongo_storage, settings.provided.storage_url),
    )
    broker_scheme = providers.Callable(url_scheme, settings.provided.broker_url)
    queues = providers.Callable(tuple, settings.provided.queues)
    consumed_queues = settings.provided.consumed_queues
    in_process_queue = providers.Singleton(MemoryBroker, queues, consumed_queues)
    rabbitmq_publisher = providers.Singleton(
        RabbitMqPublisher.from_url, settings.provided.broker_url, queues
    )
    rabbitmq_consumer = providers.Singleton(
        RabbitMqConsumer.from_url, settings.provided.broker_url, queues, consumed_queues
    )
    pubsub_publisher = providers.Singleton(
        _pubsub_publisher,
        settings.provided.broker_url,
        settings.provided.pubsub_create,
        settings.provided.publish_events,
        queues,
    )
    pubsub_consumer = providers.Singleton(
        _pubsub_consumer,
        settings.provided.broker_url,
        settings.provided.pubsub_create,
        settings.provided.publish_events,
        queues,
        consumed_queues,
    )
    publisher = providers.Selector(
        broker_scheme,
        memory=in_process_queue,
        amqp=rabbitmq_publisher,
        amqps=rabbitmq_publisher,
        pubsub=pubsub_publisher,
    )
    consumer = providers.Selector(
        broker_scheme,
        memory=in_process_queue,
        amqp=rabbitmq_consumer,
        amqps=rabbitmq_consumer,
        pubsub=pubsub_consumer,
    )
    http_kind = providers.Singleton(http_kind, providers.Callable(_http_kind_config, settings))
    builtin_kinds = providers.List(*map(providers.Object, BUILTIN_KINDS), http_kind)
    registry = providers.Singleton(build_registry, builtin_kinds, settings.provided.handler_modules)
    cursor_codec = providers.Singleton(
        CursorCodec, settings.provided.secret_key.get_secret_value.call()
    )

    uow = storage.provided.unit_of_work
    worker_registry = storage.provided.workers.call()
    metrics = providers.Singleton(PrometheusMetrics)
    completions = providers.Singleton(Completions)
    publish_committed = providers.Singleton(
        PublishCommittedHandler, uow=uow, publisher=publisher, queues=queues
    )
    recorder = providers.Singleton(
        TaskRecorder,
        ids=ids,
        clock=clock,
        relay=publish_committed,
        listeners=providers.List(metrics, completions),
        callbacks=providers.Singleton(
            Callbacks, ids=ids, retry_policy=providers.Callable(_callback_backoff, settings)
        ),
        publish_events=settings.provided.publish_events,
    )

    new_tasks = providers.Singleton(
        NewTasks,
        registry=registry,
        clock=clock,
        ids=ids,
        defaults=providers.Callable(_task_defaults, settings),
    )
    group_commit = providers.Singleton(GroupCommit, uow=uow, recorder=recorder)
    submit_task = providers.Singleton(
        SubmitTaskHandler,
        uow=uow,
        new_tasks=new_tasks,
        recorder=recorder,
        group_commit=group_commit,
    )
    submit_task_batch = providers.Singleton(
        SubmitTaskBatchHandler, uow=uow, new_tasks=new_tasks, recorder=recorder
    )
    get_task = providers.Singleton(GetTaskHandler, uow=uow, completions=completions)
    get_stats = providers.Singleton(GetStatsHandler, uow=uow, clock=clock)
    list_tasks = providers.Singleton(ListTasksHandler, uow=uow)
    cancel_task = providers.Singleton(CancelTaskHandler, uow=uow, recorder=recorder, clock=clock)
    retry_task = providers.Singleton(RetryTaskHandler, uow=uow, recorder=recorder, clock=clock)
    cancel_tasks = providers.Singleton(CancelTasksHandler, uow=uow, recorder=recorder, clock=clock)
    retry_tasks = providers.Singleton(RetryTasksHandler, uow=uow, recorder=recorder, clock=clock)
    delete_task = providers.Singleton(DeleteTaskHandler, uow=uow)
    run_task = providers.Singleton(
        RunTaskHandler,
        uow=uow,
        registry=registry,
        recorder=recorder,
        clock=clock,
        cancel_poll_interval=providers.Callable(_seconds, settings.provided.cancel_poll_seconds),
        progress_interval=providers.Callable(_seconds, settings.provided.progress_interval_seconds),
        worker_id=worker_id,
    )
    process_delivery = providers.Singleton(ProcessDeliveryHandler, run_task=run_task)
    promote_due_tasks = providers.Singleton(
        PromoteDueTasksHandler, uow=uow, recorder=recorder, clock=clock
    )
    recover_stalled_tasks = providers.Singleton(
        RecoverStalledTasksHandler,
        uow=uow,
        recorder=recorder,
        clock=clock,
        redispatch_after=providers.Callable(_seconds, settings.provided.redispatch_after_seconds),
        worker_lost_after=providers.Callable(_seconds, settings.provided.lost_after_seconds),
    )
    heartbeat_worker = providers.Singleton(
        HeartbeatWorkerHandler,
        registry=worker_registry,
        clock=clock,
        prune_after=providers.Callable(_seconds, settings.provided.worker_prune_after_seconds),
    )
    sign_off_worker = providers.Singleton(SignOffWorkerHandler, registry=worker_registry)
    list_workers = providers.Singleton(
        ListWorkersHandler,
        registry=worker_registry,
        clock=clock,
        lost_after=providers.Callable(_seconds, settings.provided.lost_after_seconds),
    )
    relay_outbox = providers.Singleton(
        RelayOutboxHandler,
        uow=uow,
        publisher=publisher,
        clock=clock,
        sweep_after=providers.Callable(_seconds, settings.provided.relay_sweep_after_seconds),
        queues=queues,
    )
    prune_outbox = providers.Singleton(
        PruneOutboxHandler,
        uow=uow,
        clock=clock,
        retention=providers.Callable(_seconds, settings.provided.outbox_retention_seconds),
    )
    prune_tasks = providers.Singleton(
        PruneTasksHandler,
        uow=uow,
        clock=clock,
        retention=providers.Callable(_seconds, settings.provided.task_retention_seconds),
    )
    schedules = storage.provided.schedules.call()
    recurrence = providers.Singleton(CronRecurrence)
    create_schedule = providers.Singleton(
        CreateScheduleHandler,
        schedules=schedules,
        new_tasks=new_tasks,
        recurrence=recurrence,
        clock=clock,
        ids=ids,
        max_per_owner=settings.provided.max_schedules_per_owner,
    )
    manage_schedules = providers.Singleton(
        ManageSchedules, schedules=schedules, recurrence=recurrence, clock=clock
    )
    run_due_schedules = providers.Singleton(
        RunDueSchedulesHandler,
        schedules=schedules,
        submit=submit_task,
        recurrence=recurrence,
        clock=clock,
        listener=metrics,
    )
    get_schedule_lag = providers.Singleton(GetScheduleLagHandler, schedules=schedules, clock=clock)
    observe_deployment = providers.Singleton(
        ObserveDeploymentHandler,
        leases=storage.provided.leases.call(),
        holder=worker_id,
        clock=clock,
        get_stats=get_stats,
        get_schedule_lag=get_schedule_lag,
        hold_for=providers.Callable(_statistics_lease, settings),
    )
    # Where the push webhook puts poison messages: the webhook serves the Pub/Sub broker only.
    dead_letters = pubsub_publisher
    push_certificates_request = providers.Object(None)  # None: Google's, over HTTPS
    push_authenticator = providers.Singleton(
        _push_authenticator,
        mode=settings.provided.push_auth_mode,
        audience=settings.provided.push_audience,
        service_account=settings.provided.push_service_account,
        request=push_certificates_request,
    )
    check_readiness = providers.Singleton(
        CheckReadinessHandler, checks=providers.List(storage, publisher)
    )


def create_container(settings: Settings) -> Container:
    """A container for these settings; refuses URLs naming no known adapter or that their
    adapter cannot read, and task kinds that cannot be loaded (``KindLoadError``): the
    storage, the publisher and the registry are built here, at start."""
    for setting, url, selector in (
        ("TASKPORT_STORAGE_URL", settings.storage_url, Container.storage),
        ("TASKPORT_BROKER_URL", settings.broker_url, Container.publisher),
    ):
        scheme = url_scheme(url)
        if scheme not in selector.providers:
            supported = ", ".join(f"{name}://" for name in sorted(selector.providers))
            raise UnsupportedUrl(
                f"{setting} names an unsupported scheme {scheme!r}; supported: {supported}"
            )
    container = Container(settings=settings)
    for setting, adapter in (
        ("TASKPORT_STORAGE_URL", container.storage),
        ("TASKPORT_BROKER_URL", container.publisher),
    ):
        try:
            adapter()  # built from its URL, which nothing connects to yet
        except ValueError as exc:
            raise UnsupportedUrl(f"{setting} is invalid: {exc}") from exc
    container.registry()
    return container
