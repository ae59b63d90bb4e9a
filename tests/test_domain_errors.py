"""Each kind of domain error has exactly one status under /api/ (rmm.errors.DOMAIN_ERROR_STATUS)."""

import inspect

import pytest

from rmm import domain_errors
from rmm.errors import DOMAIN_ERROR_STATUS, api_error_from, domain_error_status

KINDS = [
    cls
    for _, cls in inspect.getmembers(domain_errors, inspect.isclass)
    if issubclass(cls, domain_errors.DomainError) and cls is not domain_errors.DomainError
]


@pytest.mark.parametrize("kind", KINDS, ids=lambda cls: cls.__name__)
def test_every_kind_of_domain_error_has_its_own_status(kind):
    assert kind in DOMAIN_ERROR_STATUS, f"{kind.__name__} is not mapped in rmm.errors.DOMAIN_ERROR_STATUS"


def test_statuses_come_from_the_class_and_extra_keys_reach_the_answer():
    assert domain_error_status(domain_errors.Unauthenticated("No.")) == 401
    assert domain_error_status(domain_errors.StepRequired("Set it up.")) == 428
    error = api_error_from(domain_errors.StepRequired("Set it up.", code="mfa_enrollment_required", extra={"k": 1}))
    assert (error.status_code, error.code, error.extra) == (428, "mfa_enrollment_required", {"k": 1})
