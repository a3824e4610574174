"""How a trial's outcome is recorded on the Optuna trial (user attributes), defined once for the
objective that writes them and the summaries and progress lines that read them."""

from __future__ import annotations

__all__ = ["FAILURE_ATTR", "INTERRUPTED_ATTR", "MODEL_NOT_KEPT_ATTR", "PRUNED_ATTR"]

#: Why a trial failed (diverged, out of memory, invalid configuration): a failure that counts.
FAILURE_ATTR = "failure_reason"
#: Set on a trial stopped by Ctrl-C: it does not count, so a resumed study runs it again.
INTERRUPTED_ATTR = "interrupted"
#: Where a pruned trial was stopped, in words ("fold 0, epoch 0.50 (0.4123)").
PRUNED_ATTR = "pruned_at"
#: Set on a complete trial whose model could not be kept (a full disk), saying why.
MODEL_NOT_KEPT_ATTR = "criteria.model_not_kept"
