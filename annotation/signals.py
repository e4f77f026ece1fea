"""What annotation tells the layers above it, which it cannot import (the layers run one way)."""

from django.dispatch import Signal

# Sent by `project_delete` inside its transaction, the project row locked, before anything is deleted,
# with `project`. A receiver refuses the delete by raising a `common.errors.Conflict` whose message says
# why (training: a run is still queued or running); nothing is deleted then.
project_deleting = Signal()
