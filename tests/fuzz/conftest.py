"""Hypothesis profiles of the fuzz tests.

``make test`` runs the ``scopesr-ci`` profile: a fixed number of examples per test, derandomised
(the same inputs every run, so a failure is reproducible and CI is not flaky), no example
database. ``SCOPESR_FUZZ_EXAMPLES=N`` switches to the ``scopesr-long`` profile: N examples per
test, fresh random inputs each run (hypothesis prints the seed and the shrunk input of a
failure). The helpers (example counts, the per-example bound) are in fuzzutil.py; the long
mutation run over files is ``tools/fuzz.py`` (docs/CONTRIBUTING.md).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_common = dict(
    deadline=None,  # fuzzutil.bounded's SIGALRM stops a hang; hypothesis' deadline would be flaky under load
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    print_blob=True,
)
settings.register_profile("scopesr-ci", derandomize=True, database=None, **_common)
_long = int(os.environ.get("SCOPESR_FUZZ_EXAMPLES", "0") or 0)
settings.register_profile("scopesr-long", max_examples=max(_long, 1), **_common)
settings.load_profile("scopesr-long" if _long else "scopesr-ci")
