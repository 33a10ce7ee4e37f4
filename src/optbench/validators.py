"""JSON-schema validation with finite numbers, for the workflow's config and for run records alike."""

from __future__ import annotations

import jsonschema

from optbench.spec.values import is_finite_number


def _is_finite_number(checker, instance) -> bool:
    return is_finite_number(instance)


def finite_validator(schema: dict) -> jsonschema.protocols.Validator:
    """A validator of ``schema`` whose "number" type excludes NaN and infinities, which would otherwise pass
    range checks. The schemas themselves are checked by ``tests/test_bad_input.py``, not on every use."""
    base = jsonschema.validators.validator_for(schema)
    validator = jsonschema.validators.extend(base, type_checker=base.TYPE_CHECKER.redefine("number", _is_finite_number))
    return validator(schema)
