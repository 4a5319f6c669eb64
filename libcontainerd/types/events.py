"""Events published by a backend: task lifecycle, containers, images, content, snapshots.

Event kinds carry containerd's topic strings, so the remote backend maps
``/tasks/exit`` to :attr:`EventType.TASK_EXIT` and the local backend publishes the
same values for what it observes itself.

Process ids in events: containerd reports the init process of a task under the
container's own id in some events (``/tasks/exit``) and under ``""`` in others
(``/tasks/delete``). :class:`Event` normalises both to ``process_id == ""`` for
the init process, so ``event.is_init`` is reliable; an exec keeps its exec id.
"""

from __future__ import annotations

import datetime as _dt
import enum
from collections.abc import Mapping
from typing import Any

import attrs

from libcontainerd.errors import InvalidArgument
from libcontainerd.types.identifiers import frozen_mapping, optional_utc, safe_repr, to_utc

__all__ = ["Event", "EventType"]


class EventType(enum.Enum):
    """The kind of an event; the value is containerd's topic (see :attr:`topic`)."""

    TASK_CREATE = "/tasks/create"
    TASK_START = "/tasks/start"
    TASK_EXIT = "/tasks/exit"
    TASK_OOM = "/tasks/oom"
    TASK_EXEC_ADDED = "/tasks/exec-added"
    TASK_EXEC_STARTED = "/tasks/exec-started"
    TASK_PAUSED = "/tasks/paused"
    TASK_RESUMED = "/tasks/resumed"
    TASK_DELETE = "/tasks/delete"
    # containerd sends a task's stdio paths inside /tasks/create and has no topic of its
    # own for them; this topic is this SDK's, for backends that report stdio separately.
    TASK_IO = "/tasks/io"
    TASK_CHECKPOINTED = "/tasks/checkpointed"
    CONTAINER_CREATE = "/containers/create"
    CONTAINER_UPDATE = "/containers/update"
    CONTAINER_DELETE = "/containers/delete"
    IMAGE_CREATE = "/images/create"
    IMAGE_UPDATE = "/images/update"
    IMAGE_DELETE = "/images/delete"
    CONTENT_DELETE = "/content/delete"
    SNAPSHOT_PREPARE = "/snapshot/prepare"
    SNAPSHOT_COMMIT = "/snapshot/commit"
    SNAPSHOT_REMOVE = "/snapshot/remove"
    NAMESPACE_CREATE = "/namespaces/create"
    NAMESPACE_UPDATE = "/namespaces/update"
    NAMESPACE_DELETE = "/namespaces/delete"
    UNKNOWN = ""

    @property
    def topic(self) -> str:
        """containerd's topic for this kind (``""`` for :attr:`UNKNOWN`)."""
        return self.value

    @property
    def is_task_event(self) -> bool:
        """Whether the event concerns a task or one of its processes."""
        return self.value.startswith("/tasks/")

    @classmethod
    def from_topic(cls, topic: str) -> EventType:
        """The kind for ``topic``; topics this version does not know give :attr:`UNKNOWN`.

        Unknown topics are not an error because a newer daemon may publish more.
        """
        if not isinstance(topic, str):
            raise InvalidArgument(f"event topic must be a str, not {type(topic).__name__}")
        return _BY_TOPIC.get(topic, cls.UNKNOWN)


_BY_TOPIC: dict[str, EventType] = {kind.value: kind for kind in EventType}


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _timestamp(value: _dt.datetime) -> _dt.datetime:
    return to_utc(value, what="Event.timestamp")


def _exited_at(value: _dt.datetime | None) -> _dt.datetime | None:
    return optional_utc(value, what="Event.exited_at")


def _str_field(instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str):
        raise InvalidArgument(f"Event.{attribute.name} must be a str, not {type(value).__name__}")


def _opt_uint(instance: object, attribute: attrs.Attribute[int | None], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
        raise InvalidArgument(
            f"Event.{attribute.name} must be None or an int from 0 to 2**32-1, "
            f"got {safe_repr(value)}"
        )


def _event_type(value: EventType | str) -> EventType:
    if isinstance(value, EventType):
        return value
    if isinstance(value, str):
        return EventType.from_topic(value)
    raise InvalidArgument(f"Event.type must be an EventType, not {type(value).__name__}")


def _text() -> Any:
    return attrs.field(default="", validator=_str_field)


@attrs.frozen(kw_only=True)
class Event:
    """One event, with the fields that matter to callers pulled out of the payload.

    Fields that do not apply to the event's kind keep their empty default:
    ``container_id``/``process_id``/``pid``/``exit_code``/``exited_at`` for task
    events, ``image`` for image events, ``key``/``parent`` for snapshot events,
    ``digest`` for content events, ``checkpoint`` for checkpoint events,
    ``snapshotter`` for snapshot events. ``topic`` is the topic as received
    (it defaults to the kind's topic; it differs for :attr:`EventType.UNKNOWN`).
    ``raw`` holds the decoded payload as the backend got it. ``reconstructed`` is
    true for an event the client rebuilt from the daemon's state because the daemon
    published it while the client could not listen (remote: containerd restarted).
    """

    type: EventType = attrs.field(converter=_event_type)
    namespace: str = _text()
    timestamp: _dt.datetime = attrs.field(factory=_now, converter=_timestamp)
    topic: str = attrs.field(validator=_str_field)
    container_id: str = _text()
    process_id: str = _text()
    pid: int | None = attrs.field(default=None, validator=_opt_uint)
    exit_code: int | None = attrs.field(default=None, validator=_opt_uint)
    exited_at: _dt.datetime | None = attrs.field(default=None, converter=_exited_at)
    image: str = _text()
    key: str = _text()
    parent: str = _text()
    snapshotter: str = _text()
    digest: str = _text()
    checkpoint: str = _text()
    reconstructed: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    raw: Mapping[str, Any] = attrs.field(
        factory=dict, converter=frozen_mapping, eq=False, hash=False, repr=False
    )

    @topic.default
    def _default_topic(self) -> str:
        return self.type.topic

    def __attrs_post_init__(self) -> None:
        if self.container_id and self.process_id == self.container_id:
            object.__setattr__(self, "process_id", "")

    @property
    def is_init(self) -> bool:
        """Whether a task event concerns the task's init process rather than an exec."""
        return self.type.is_task_event and self.process_id == ""
