"""Shared test set-up: deterministic hypothesis, one torch thread, no JIT-time flakiness."""

import os

from hypothesis import HealthCheck, settings

# Deterministic in CI (and locally unless HYPOTHESIS_PROFILE=dev): a derandomized profile, no
# deadline (the first call of a numba kernel compiles for up to a second or two).
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("dev", deadline=None, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # the solver tests run without the RL extra
    pass
