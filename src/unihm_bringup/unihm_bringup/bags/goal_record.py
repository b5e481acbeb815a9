"""The goal record: one JSON line per finished Manipulate goal, on ``/unihm/goal_record``.

The executive publishes one ``std_msgs/String`` on ``/unihm/goal_record`` (reliable, volatile,
depth 10) when a goal ends, whatever the outcome. It is what a bag needs to replay and compare a
goal later: the goal itself (the action's goal topic is a service and is not recorded) and the
outcome with the time each stage took. The trajectories are not repeated here: they are on
``/unihm/target_trajectory``, ``/unihm/generated_trajectory`` and ``/unihm/refined_trajectory``
with the same ``request_id``.

This module is ROS-free: it builds and parses the JSON text; the executive wraps it in a
``std_msgs.msg.String``. Schema (``schema`` = ``unihm.goal_record/1``)::

    request_id   str          the id used on every topic of the goal
    instruction  str          the goal's instruction
    hands        list[str]    the hands requested (as in the goal; may be empty)
    execute      bool         the goal's execute flag
    success      bool         the result's success
    error_code   int          Manipulate.Result error code (0 = OK)
    error_name   str          its constant name (OK, PERCEPTION_FAILED, ...)
    failed_stage str          the stage that ended the goal, "" on success
    message      str          the result's message
    executed     bool         the result's executed flag
    stage_s      dict         seconds per stage that ran: perceiving, generating, refining,
                              validating, executing
    total_s      float        seconds from goal acceptance to result
    stamp_ns     int          wall time of the result, nanoseconds since the epoch
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

GOAL_RECORD_TOPIC = "/unihm/goal_record"
GOAL_RECORD_TYPE = "std_msgs/msg/String"
GOAL_RECORD_DEPTH = 10
"""QoS: reliable, volatile, keep last 10 (a late recorder does not get old goals)."""
SCHEMA = "unihm.goal_record/1"

STAGES = ("perceiving", "generating", "refining", "validating", "executing")
"""The feedback stages of Manipulate, in pipeline order (the keys of ``stage_s``)."""
ERROR_NAMES = ("OK", "INVALID_GOAL", "PERCEPTION_FAILED", "GENERATION_FAILED",
               "REFINEMENT_FAILED", "VALIDATION_FAILED", "EXECUTION_FAILED", "TIMEOUT",
               "CANCELED", "PREEMPTED")
"""Manipulate.Result error codes by value."""


class GoalRecordError(ValueError):
    """The text is not a goal record of a schema this module reads."""


@dataclass(frozen=True)
class GoalRecord:
    """One finished goal, as published on ``/unihm/goal_record``."""

    request_id: str
    instruction: str
    hands: tuple[str, ...] = ()
    execute: bool = False
    success: bool = False
    error_code: int = 0
    failed_stage: str = ""
    message: str = ""
    executed: bool = False
    stage_s: Mapping[str, float] = field(default_factory=dict)
    total_s: float = math.nan
    stamp_ns: int = 0

    @property
    def error_name(self) -> str:
        """The Manipulate.Result constant of ``error_code`` (``code_<n>`` for unknown ones)."""
        if 0 <= self.error_code < len(ERROR_NAMES):
            return ERROR_NAMES[self.error_code]
        return f"code_{self.error_code}"

    def to_json(self) -> str:
        """The record as one line of JSON, the ``data`` of the String message."""
        body: dict[str, Any] = {"schema": SCHEMA, **asdict(self)}
        body["hands"] = list(self.hands)
        body["stage_s"] = {k: float(v) for k, v in self.stage_s.items()}
        body["total_s"] = None if math.isnan(self.total_s) else float(self.total_s)
        body["error_name"] = self.error_name
        return json.dumps(body, separators=(",", ":"), allow_nan=False)


def goal_record_message(*, request_id: str, instruction: str, hands: Sequence[str] = (),
                        execute: bool = False, success: bool, error_code: int,
                        message: str = "", failed_stage: str = "", executed: bool = False,
                        stage_s: Mapping[str, float] | None = None,
                        total_s: float | None = None, stamp_ns: int | None = None) -> str:
    """JSON text for the ``data`` of the ``std_msgs/String`` published on GOAL_RECORD_TOPIC.

    ``stage_s`` maps stage names (``STAGES``) to seconds; unknown stage names are rejected so a
    typo does not silently drop a timing. ``stamp_ns`` defaults to now.
    """
    timings = dict(stage_s or {})
    unknown = sorted(set(timings) - set(STAGES))
    if unknown:
        raise GoalRecordError(f"unknown stage(s) {', '.join(unknown)}; stages are "
                              f"{', '.join(STAGES)}")
    for stage, seconds in timings.items():
        if not math.isfinite(float(seconds)) or float(seconds) < 0:
            raise GoalRecordError(f"stage {stage} took {seconds!r} s; must be finite and >= 0")
    record = GoalRecord(
        request_id=str(request_id), instruction=str(instruction),
        hands=tuple(str(h) for h in hands), execute=bool(execute), success=bool(success),
        error_code=int(error_code), failed_stage=str(failed_stage), message=str(message),
        executed=bool(executed), stage_s={s: float(timings[s]) for s in STAGES if s in timings},
        total_s=math.nan if total_s is None else float(total_s),
        stamp_ns=time.time_ns() if stamp_ns is None else int(stamp_ns))
    return record.to_json()


def parse_goal_record(text: str | bytes) -> GoalRecord:
    """The record in the ``data`` of a goal-record String; GoalRecordError when it is not one."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as e:
        raise GoalRecordError(f"goal record is not JSON: {e}") from e
    if not isinstance(body, dict):
        raise GoalRecordError(f"goal record must be a JSON object, got {type(body).__name__}")
    if body.get("schema") != SCHEMA:
        raise GoalRecordError(f"goal record schema {body.get('schema')!r}; expected {SCHEMA!r}")
    missing = [k for k in ("request_id", "instruction", "success", "error_code") if k not in body]
    if missing:
        raise GoalRecordError(f"goal record lacks {', '.join(missing)}")
    try:
        stage_s = {str(k): float(v) for k, v in (body.get("stage_s") or {}).items()}
        total = body.get("total_s")
        return GoalRecord(
            request_id=str(body["request_id"]), instruction=str(body["instruction"]),
            hands=tuple(str(h) for h in body.get("hands") or ()),
            execute=bool(body.get("execute", False)), success=bool(body["success"]),
            error_code=int(body["error_code"]), failed_stage=str(body.get("failed_stage", "")),
            message=str(body.get("message", "")), executed=bool(body.get("executed", False)),
            stage_s=stage_s, total_s=math.nan if total is None else float(total),
            stamp_ns=int(body.get("stamp_ns") or 0))
    except (TypeError, ValueError, AttributeError) as e:
        raise GoalRecordError(f"goal record has a field of the wrong type: {e}") from e
