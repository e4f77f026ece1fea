"""A fuzz run of the whole API (schemathesis): every operation, as staff and as an annotator, never a 5xx.

Two passes over each operation, in-process on the WSGI app: schemathesis' coverage cases (boundary
values, wrong types, missing and extra fields, each once, also with path ids of rows that exist so
that they get past the 404s), then random requests that fit the schema or break it. Bounded for
`make test` (about two minutes on two cores); FUZZ_EXAMPLES=500 makes a longer random pass.
"""

import os

import pytest
from django.db import transaction
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
# The annotator's own operations, where their lease is what the known ids name; staff call the rest.
ANNOTATOR_PATHS = (
    "/api/assignments/",
    "/api/projects/{project_id}/next/",
    "/api/projects/{project_id}/progress/",
)


class ServerErrors(list):
    """Each 5xx as `METHOD /path: the check's report`."""

    def call(self, case, caller: dict[str, str]) -> None:
        # In a savepoint: a database error would otherwise abort the test's transaction, and every
        # request after it would fail for that reason alone.
        savepoint = transaction.savepoint()
        response = case.call(headers=caller)
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except AssertionError as failure:
            self.append(f"{case.operation.method.upper()} {case.operation.path}: {failure}")
        transaction.savepoint_rollback(savepoint)


def _coverage_pass(schema, operation, world, errors: ServerErrors) -> None:
    caller = world.annotator if operation.path.startswith(ANNOTATOR_PATHS) else world.staff
    known = world.path_ids(operation.path)
    config = schema.config.generation_for(operation=operation)
    for case in schema.iter_coverage_cases(operation, generation_modes=MODES, generation_config=config):
        errors.call(case, caller)
        if known and all(str(value).isdigit() for value in (case.path_parameters or {}).values()):
            case.path_parameters = dict(known)
            errors.call(case, caller)


def _random_pass(operation, world, errors: ServerErrors) -> None:
    known = world.path_ids(operation.path)
    cases = st.one_of(
        *(
            operation.as_strategy(mode, **({"path_parameters": known} if use_known else {}))
            for mode in MODES
            for use_known in (True, False)
        )
    )

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases, caller=st.sampled_from([world.staff, world.annotator]))
    def call(case, caller):
        errors.call(case, caller)

    call()


def test_no_request_to_the_api_gets_a_server_error(api_schema, api_world):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 28
    errors = ServerErrors()
    for operation in operations:
        _coverage_pass(api_schema, operation, api_world, errors)
        _random_pass(operation, api_world, errors)
    assert not errors, f"{len(errors)} server errors; the first ones:\n\n" + "\n\n".join(errors[:5])
