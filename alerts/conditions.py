"""Alert conditions: validation with path-addressed errors, and compilation to set-wise SQL.

Owned by the evaluator's work (issue 14). ``AlertRule.clean()`` calls :func:`validate_rule`.
"""

from __future__ import annotations


def validate_rule(rule) -> None:
    """Raise ``django.core.exceptions.ValidationError`` (keyed by field, path-addressed inside ``condition``) when
    ``rule`` breaks a rule of the alerts spec (condition shape, scope: site/group need an org rule and must belong
    to it, …). TO BE WRITTEN."""
