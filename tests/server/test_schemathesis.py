"""Requests generated from the app's own OpenAPI schema (schemathesis): never a 5xx.

Driven through hypothesis directly: schemathesis' pytest plugin does not load under
this pytest version.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.app import create_app
from server.settings import Settings


@pytest.fixture(scope="module")
def operations(models_dir, tmp_path_factory):
    app = create_app(
        Settings(
            models_dir=models_dir,
            calibration_images=200,
            state_dir=tmp_path_factory.mktemp("state"),
        )
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    ops = [result.ok() for result in schema.get_all_operations()]
    assert len(ops) >= 7  # health, models ×2, keys, infer, jobs, job status, job result
    return ops


def test_no_server_errors(operations):
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data):
        op = data.draw(st.sampled_from(operations))
        case = data.draw(op.as_strategy())
        response = case.call()
        assert response.status_code < 500, (
            case.method,
            case.path,
            response.status_code,
            response.text[:300],
        )

    run()
