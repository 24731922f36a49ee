"""The app's own helpers (UI only; never imported by the core).

Not a page: ``app.py`` lists its pages explicitly with ``st.navigation``, which ignores
everything else under ``pages/``.

- ``state``: the typed session state (widget keys and the analyst's progress);
- ``jobs``: the shared pipeline, progress bars and one-sentence errors;
- ``investigation``: what the pages share, derived from the session through the core;
- ``display``: widgets generated from parameter dataclasses, formatting, the sidebar;
- ``persist``: the session's investigation on disk, bound to the URL;
- ``workspace``: the list of saved investigations (open, rename, delete);
- ``triage_desk`` / ``triage_scatter`` / ``evidence``: Triage's sort, filters, cut and bulk
  decisions, its box-selectable evidence scatter, and the per-transformation evidence.
"""

from .display import HELP, class_name, param_widgets, params_from_widgets, params_text, pct, sha256, sidebar_summary
from .investigation import (
    DISPLAY_RULE,
    FOLDER,
    MAX_AFFECTED,
    CollapseView,
    Flags,
    activate,
    active,
    affected_candidates,
    affected_images,
    affected_signature,
    affected_target,
    affected_test_indices,
    approved,
    candidates,
    collapse_config,
    collapse_signature,
    collapse_view,
    copies_counted,
    current_collapse,
    current_flags,
    enabled_transforms,
    ground_truth,
    has_attack_gallery,
    memo,
    open_step,
    require_active,
    rounds,
    rule_params,
    scenario_from_widgets,
    test_predictions,
    trained,
)
from .jobs import attempt, cache_dir, pipeline, run_long, show_error
from .persist import bind as bind_investigation
from .persist import record_run, upload_saved
from .persist import save as save_investigation
from .state import (
    Active,
    Keyed,
    Session,
    Unlearned,
    Upload,
    Widgets,
    init_state,
    keep,
    reset_downstream,
    session,
    through_app,
    widgets,
)
from .workspace import investigation_list

__all__ = [
    "DISPLAY_RULE",
    "FOLDER",
    "HELP",
    "MAX_AFFECTED",
    "Active",
    "CollapseView",
    "Flags",
    "Keyed",
    "Session",
    "Unlearned",
    "Upload",
    "Widgets",
    "activate",
    "active",
    "affected_candidates",
    "affected_images",
    "affected_signature",
    "affected_target",
    "affected_test_indices",
    "approved",
    "attempt",
    "bind_investigation",
    "cache_dir",
    "candidates",
    "class_name",
    "collapse_config",
    "collapse_signature",
    "collapse_view",
    "copies_counted",
    "current_collapse",
    "current_flags",
    "enabled_transforms",
    "ground_truth",
    "has_attack_gallery",
    "init_state",
    "investigation_list",
    "keep",
    "memo",
    "open_step",
    "param_widgets",
    "params_from_widgets",
    "params_text",
    "pct",
    "pipeline",
    "record_run",
    "require_active",
    "reset_downstream",
    "rounds",
    "rule_params",
    "run_long",
    "save_investigation",
    "scenario_from_widgets",
    "session",
    "sha256",
    "show_error",
    "sidebar_summary",
    "test_predictions",
    "through_app",
    "trained",
    "upload_saved",
    "widgets"
]
