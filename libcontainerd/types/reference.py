"""Image references (``busybox``, ``localhost:5000/a/b:t``, ``name@sha256:...``).

References follow docker's grammar and normalisation, so a name means the same
thing here as it does to ``docker pull`` and to containerd's CRI plugin::

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] component ( "/" component )*
    domain     := host [ ":" port ]   host = DNS-like labels, "localhost" or "[ipv6]"
    component  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}

The first path element is a domain only when it contains ``.`` or ``:`` or is
``localhost`` (or is a bracketed IPv6 address); a first element with a ``.`` that is
not a host name but is a valid path component (``my_registry.com/team``) is accepted
as docker accepts it, unchanged; otherwise the domain is
``docker.io``, and a single-component name there gets the ``library/`` prefix.
``index.docker.io`` is folded into ``docker.io``. A reference with neither tag
nor digest gets the tag ``latest``.
"""

from __future__ import annotations

import re

import attrs

from libcontainerd.errors import InvalidArgument
from libcontainerd.types.digest import split_digest
from libcontainerd.types.identifiers import safe_repr

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_TAG",
    "DISTRIBUTION_SOURCE_LABEL_PREFIX",
    "MAX_NAME_LENGTH",
    "OFFICIAL_REPOSITORY_PREFIX",
    "Reference",
    "validate_tag",
]

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPOSITORY_PREFIX = "library"
DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 255
"""Longest ``domain/path`` docker and registries accept."""
MAX_TAG_LENGTH = 128
DISTRIBUTION_SOURCE_LABEL_PREFIX = "containerd.io/distribution.source."
"""containerd labels a blob with ``<prefix><domain>`` = repository path(s) it came from."""

# Longer input cannot be a valid reference (name + tag + sha512 digest is < 530).
_MAX_TEXT = 1024

_DOMAIN_LABEL = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_HOST = rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[0-9A-Fa-f:]+\])"
_DOMAIN_RE = re.compile(rf"{_HOST}(?::[0-9]+)?")
_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_IMAGE_ID_RE = re.compile(r"[a-f0-9]{64}")

_GRAMMAR_HINT = (
    "expected [domain[:port]/]path[:tag][@digest] with a lowercase path, "
    "for example 'busybox', 'busybox:1.36' or 'localhost:5000/team/app:v1'"
)


def _refuse(text: object, reason: str) -> InvalidArgument:
    return InvalidArgument(f"invalid image reference {safe_repr(text)}: {reason}; {_GRAMMAR_HINT}")


def validate_tag(tag: object) -> str:
    """Return ``tag`` if it is a valid image tag, else raise :class:`InvalidArgument`."""
    if not isinstance(tag, str):
        raise InvalidArgument(f"image tag must be a str, not {type(tag).__name__}")
    if _TAG_RE.fullmatch(tag) is None:
        raise InvalidArgument(
            f"invalid image tag {safe_repr(tag)}: use 1 to {MAX_TAG_LENGTH} ASCII letters, "
            "digits, '_', '.' or '-', not starting with '.' or '-'"
        )
    return tag


def _check_domain(text: object, domain: str) -> None:
    # docker's grammar reads a first element such as "my_registry.com" (a '.' but not a
    # valid host) as a path component with no domain, so the reference stays valid and
    # its name is unchanged; it is kept here as the domain, the host a pull would dial.
    if _DOMAIN_RE.fullmatch(domain) is None and _COMPONENT_RE.fullmatch(domain) is None:
        raise _refuse(text, f"{safe_repr(domain)} is not a valid registry host[:port]")


def _check_path(text: object, path: str) -> None:
    if not path:
        raise _refuse(text, "the repository path is empty")
    for component in path.split("/"):
        if _COMPONENT_RE.fullmatch(component) is not None:
            continue
        if _COMPONENT_RE.fullmatch(component.lower()) is not None:
            raise _refuse(
                text,
                f"repository name must be lowercase ({safe_repr(component)} has uppercase "
                "letters; only the registry host and the tag may)",
            )
        if not component:
            raise _refuse(
                text, "the repository path has an empty component ('//' or a '/' at an end)"
            )
        raise _refuse(
            text,
            f"path component {safe_repr(component)} must be lowercase letters and digits "
            "joined by '.', '_', '__' or '-', starting and ending with a letter or digit",
        )


def _check_name_length(text: object, domain: str, path: str) -> None:
    length = len(domain) + 1 + len(path)
    if length > MAX_NAME_LENGTH:
        raise _refuse(
            text, f"the name is {length} characters long, more than the maximum {MAX_NAME_LENGTH}"
        )


def _split_domain(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        domain, remainder = first, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, name
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = f"{OFFICIAL_REPOSITORY_PREFIX}/{remainder}"
    return domain, remainder


def _validate_domain_field(
    instance: Reference, attribute: attrs.Attribute[str], value: str
) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidArgument("Reference.domain must be a non-empty str such as 'docker.io'")
    _check_domain(value, value)


def _validate_path_field(instance: Reference, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str):
        raise InvalidArgument(f"Reference.path must be a str, not {type(value).__name__}")
    _check_path(value, value)
    _check_name_length(value, instance.domain, value)


def _validate_tag_field(instance: Reference, attribute: attrs.Attribute[str], value: str) -> None:
    if value != "":
        validate_tag(value)


def _validate_digest_field(
    instance: Reference, attribute: attrs.Attribute[str], value: str
) -> None:
    if value != "":
        split_digest(value)


@attrs.frozen
class Reference:
    """A normalised image reference: registry ``domain``, repository ``path``, tag, digest.

    Build one with :meth:`parse`; constructing it directly validates each field but
    does not normalise (no ``library/`` prefix, no default tag).
    """

    domain: str = attrs.field(validator=_validate_domain_field)
    path: str = attrs.field(validator=_validate_path_field)
    tag: str = attrs.field(default="", validator=_validate_tag_field)
    digest: str = attrs.field(default="", validator=_validate_digest_field)

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse and normalise ``text`` (``busybox`` -> ``docker.io/library/busybox:latest``).

        Raises :class:`InvalidArgument` naming the part that is wrong.
        """
        if not isinstance(text, str):
            raise InvalidArgument(f"image reference must be a str, not {type(text).__name__}")
        if not text:
            raise InvalidArgument(f"image reference must not be empty; {_GRAMMAR_HINT}")
        if len(text) > _MAX_TEXT:
            raise _refuse(text, f"it is {len(text)} characters long")
        if _IMAGE_ID_RE.fullmatch(text) is not None:
            raise _refuse(
                text,
                "a 64-digit hex string is an image id, not a name; "
                "use 'name@sha256:<hex>' to refer to content by digest",
            )
        remainder, at, digest = text.partition("@")
        if at:
            if not digest:
                raise _refuse(text, "nothing follows '@'")
            try:
                split_digest(digest)
            except InvalidArgument as error:
                # The digest message already says what a digest must look like.
                raise InvalidArgument(
                    f"invalid image reference {safe_repr(text)}: {error}"
                ) from None
        # A ':' after the last '/' starts the tag; an earlier one is the registry port.
        colon = remainder.rfind(":")
        tag = ""
        name = remainder
        if colon > remainder.rfind("/"):
            name, tag = remainder[:colon], remainder[colon + 1 :]
            if _TAG_RE.fullmatch(tag) is None:
                raise _refuse(
                    text,
                    f"tag {safe_repr(tag)} must be 1 to {MAX_TAG_LENGTH} ASCII letters, digits, "
                    "'_', '.' or '-', not starting with '.' or '-'",
                )
        if not name:
            raise _refuse(text, "the repository name is empty")
        domain, path = _split_domain(name)
        _check_domain(text, domain)
        _check_path(text, path)
        _check_name_length(text, domain, path)
        if not tag and not digest:
            tag = DEFAULT_TAG
        return cls(domain, path, tag, digest)

    @property
    def name(self) -> str:
        """``domain/path`` without tag or digest."""
        return f"{self.domain}/{self.path}"

    @property
    def locator(self) -> str:
        """Where the repository lives (``domain/path``), as containerd's resolver calls it."""
        return self.name

    @property
    def object(self) -> str:
        """What is asked of the repository: ``tag``, ``@digest`` or ``tag@digest``."""
        return self.tag + (f"@{self.digest}" if self.digest else "")

    def distribution_source_label(self) -> tuple[str, str]:
        """The ``(key, value)`` containerd puts on fetched blobs to remember their source."""
        return DISTRIBUTION_SOURCE_LABEL_PREFIX + self.domain, self.path

    def familiar_name(self) -> str:
        """docker's short name: ``busybox`` for ``docker.io/library/busybox``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        owner, slash, rest = self.path.partition("/")
        if owner == OFFICIAL_REPOSITORY_PREFIX and slash and "/" not in rest:
            return rest
        return self.path

    def familiar(self) -> str:
        """docker's short form of the whole reference: ``busybox:latest``."""
        return self._format(self.familiar_name())

    def with_tag(self, tag: str) -> Reference:
        """The same repository with ``tag`` (the digest, if any, is kept)."""
        return attrs.evolve(self, tag=validate_tag(tag))

    def with_digest(self, digest: str) -> Reference:
        """The same repository with ``digest`` (the tag, if any, is kept)."""
        split_digest(digest)
        return attrs.evolve(self, digest=digest)

    def without_tag(self) -> Reference:
        """The reference with its tag dropped (only meaningful when it has a digest)."""
        return attrs.evolve(self, tag="")

    def _format(self, name: str) -> str:
        text = name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def __str__(self) -> str:
        return self._format(self.name)
