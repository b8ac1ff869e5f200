"""Job ids stay exactly uuid5 of the delivery id: they are stored and shown to users."""

from __future__ import annotations

import uuid

import pytest
from hookline.ids import _JOB_NAMESPACE, job_id_for_delivery
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.parametrize(
    "delivery", ["72d3162e-cc78-11e3-81ab-4c9367dc0958", "x", "", "\u00e9\u4e2d", "a" * 300]
)
def test_job_id_is_uuid5_of_the_delivery(delivery: str) -> None:
    assert job_id_for_delivery(delivery) == str(uuid.uuid5(_JOB_NAMESPACE, delivery))


@given(st.text(max_size=200))
def test_job_id_matches_uuid5_for_any_text(delivery: str) -> None:
    assert job_id_for_delivery(delivery) == str(uuid.uuid5(_JOB_NAMESPACE, delivery))
