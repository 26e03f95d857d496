"""Override merging: agent definition + per-call (or per-member) overrides → effective agent."""

from convoi.overrides.merge import OVERRIDE_KEYS, AgentOverrides, MergeResult, OverrideError, merge

__all__ = ["OVERRIDE_KEYS", "AgentOverrides", "MergeResult", "OverrideError", "merge"]
