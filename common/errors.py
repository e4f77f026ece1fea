"""The kinds of failure a service can report, which the API's one exception handler turns into statuses.

A service raises its own error class (`AssignmentConflict`, `TrainingQueueUnavailable`, ...) derived from
one of these kinds; it says what went wrong for the person who asked, and nothing about HTTP.
"""


class DomainError(Exception):
    """A request the service cannot carry out; its text is meant for the person who made it."""


class Invalid(DomainError):
    """The request itself is wrong: a value out of range, a ranking that does not fit."""


class NotFound(DomainError):
    """What the request names does not exist, or is not this person's to see."""


class Conflict(DomainError):
    """The request is fine but the state it finds forbids it now: a run already queued, a lease expired."""


class Unavailable(DomainError):
    """A service the request needs (the Celery broker) cannot be reached; try again later."""
