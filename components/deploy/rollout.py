"""The canary rollout policy: what one pipeline run does to the InferenceService, and why.

Annotations on the InferenceService remember which model is stable and which is the canary, so
a later run can promote the canary (drop the split) or roll back (restore the stable storageUri).
``plan_rollout`` is pure: it reads the existing InferenceService and returns the steps
(``cluster.apply_inference_service`` applies them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mlengine.components.deploy.cluster import (
    DEPLOYMENT_MODE,
    check_deployment_mode,
    check_name,
    check_storage_uri,
    deployment_mode_of,
    render_inference_service,
    standard_canary,
)
from mlengine.constants import K8S_NAMESPACE
from mlengine.errors import MlengineError

ANNOTATION_STABLE = "mlengine.io/stable-storage-uri"
ANNOTATION_CANARY = "mlengine.io/canary-storage-uri"
ANNOTATION_ACTION = "mlengine.io/rollout-action"


@dataclass
class RolloutStep:
    action: str  # create | canary | promote | rollback | replace
    description: str
    body: dict  # the manifest to create, or a JSON merge patch

    @property
    def is_create(self) -> bool:
        return self.action == "create"


@dataclass
class RolloutDecision:
    """What one pipeline run does to the InferenceService, and why."""

    action: str  # create | canary | promote | rollback | replace | keep | hold | skip
    name: str
    namespace: str
    new_storage_uri: str
    blessed: bool
    reason: str
    stable_storage_uri: str | None = None  # gets 100 - canary percent after the rollout
    canary_storage_uri: str | None = None
    canary_traffic_percent: int | None = None
    previous_storage_uri: str | None = None  # what served before this run
    steps: list[RolloutStep] = field(default_factory=list)

    @property
    def changes_cluster(self) -> bool:
        return bool(self.steps)

    @property
    def traffic(self) -> dict[str, int]:
        """storage URI -> percent of traffic once the steps are applied."""
        if self.stable_storage_uri is None and self.canary_storage_uri is None:
            return {}
        if self.canary_storage_uri is None or self.canary_traffic_percent is None:
            return {self.stable_storage_uri: 100}
        return {self.stable_storage_uri: 100 - self.canary_traffic_percent,
                self.canary_storage_uri: self.canary_traffic_percent}

    def to_dict(self) -> dict:
        out = asdict(self)
        out["traffic"] = self.traffic
        return out


def read_rollout_state(isvc: dict) -> dict[str, Any]:
    """Storage URI, canary percent and the stable/canary models recorded on an existing InferenceService.

    Standard mode keeps its canary in ``spec.canary[]`` (the predictor stays the stable model);
    Knative mode has the canary in ``spec.predictor`` with ``canaryTrafficPercent``.
    """
    canaries = (isvc.get("spec") or {}).get("canary") or []
    if canaries:
        stable_uri = (((isvc.get("spec") or {}).get("predictor") or {}).get("model") or {}).get("storageUri")
        entry = canaries[0]
        return {"storage_uri": stable_uri, "canary_percent": entry.get("trafficPercent"), "stable": stable_uri,
                "canary": ((entry.get("predictor") or {}).get("model") or {}).get("storageUri"),
                "canary_active": True}
    spec = (isvc.get("spec") or {}).get("predictor") or {}
    annotations = (isvc.get("metadata") or {}).get("annotations") or {}
    percent = spec.get("canaryTrafficPercent")
    storage_uri = (spec.get("model") or {}).get("storageUri")
    canary_active = isinstance(percent, int) and 0 <= percent < 100 and annotations.get(ANNOTATION_CANARY) is not None
    if isinstance(percent, int) and 0 < percent < 100 and not canary_active:
        canary_active = True  # a split made by hand: the spec's model is the canary, the stable URI is unknown
    return {"storage_uri": storage_uri, "canary_percent": percent if canary_active else None,
            "stable": annotations.get(ANNOTATION_STABLE) if canary_active else storage_uri,
            "canary": storage_uri if canary_active else None, "canary_active": canary_active}


def plan_rollout(existing_isvc: dict | None, new_storage_uri: str, blessed: bool, canary_percent: int,
                 previous_canary_ok: bool | None, *, name: str | None = None, namespace: str = K8S_NAMESPACE,
                 **render_options: Any) -> RolloutDecision:
    """Decide this run's rollout.

    - no InferenceService yet: a blessed model is created with 100% of the traffic;
    - a canary is running: promote it to 100% when ``previous_canary_ok`` (its evaluation passed),
      roll back to the stable model when it failed, hold when it is not evaluated yet (None);
      after a promote or rollback a new blessed model starts its own canary;
    - stable only: a new blessed model becomes a canary at ``canary_percent`` (100 = replace).
    An unblessed model never receives traffic. ``render_options`` go to render_inference_service.
    """
    check_storage_uri(new_storage_uri)
    if not isinstance(canary_percent, int) or isinstance(canary_percent, bool) or not 1 <= canary_percent <= 100:
        raise MlengineError(f"canary percent {canary_percent!r}: expected an integer 1..100 (100 = no canary)")
    if existing_isvc is not None:
        metadata = existing_isvc.get("metadata") or {}
        name = metadata.get("name") or name
        namespace = metadata.get("namespace") or namespace
    if not name:
        raise MlengineError("plan_rollout: an InferenceService name is needed for a first deployment")
    check_name(name)
    base = {"name": name, "namespace": namespace, "new_storage_uri": new_storage_uri, "blessed": blessed}
    # the mode decides how a canary is written: Knative's canaryTrafficPercent or Standard's spec.canary[]
    mode = deployment_mode_of(existing_isvc) if existing_isvc is not None else check_deployment_mode(
        render_options.get("deployment_mode", DEPLOYMENT_MODE))
    style = {"standard": mode == "Standard",
             "predictor": ((existing_isvc or {}).get("spec") or {}).get("predictor") or {}}

    if existing_isvc is None:
        if not blessed:
            return RolloutDecision("skip", reason="no InferenceService exists and the model is not blessed: "
                                   "nothing to serve", **base)
        annotations = {ANNOTATION_STABLE: new_storage_uri, ANNOTATION_ACTION: "create"}
        manifest = render_inference_service(name, new_storage_uri, namespace=namespace, annotations=annotations,
                                            **render_options)
        return RolloutDecision("create", reason="first deployment: the blessed model takes 100% of the traffic",
                               stable_storage_uri=new_storage_uri,
                               steps=[RolloutStep("create", f"create {name} serving {new_storage_uri}", manifest)],
                               **base)

    state = read_rollout_state(existing_isvc)
    current = state["storage_uri"]
    if not current:
        raise MlengineError(f"InferenceService {namespace}/{name} has no spec.predictor.model.storageUri; "
                            f"it was not created by mlengine")
    base["previous_storage_uri"] = current
    steps: list[RolloutStep] = []
    stable = state["stable"]

    if state["canary_active"]:
        canary = state["canary"]
        if previous_canary_ok is None:
            return RolloutDecision(
                "hold", reason=f"the canary {canary} ({state['canary_percent']}% of traffic) is not evaluated yet; "
                f"{'the new model waits' if blessed and new_storage_uri != canary else 'nothing changes'}",
                stable_storage_uri=stable, canary_storage_uri=canary,
                canary_traffic_percent=state["canary_percent"], **base)
        if previous_canary_ok:
            action, stable = "promote", canary
            steps.append(RolloutStep("promote", f"promote the canary {canary} to 100%", _patch(
                storage_uri=canary if style["standard"] else None, canary_percent=None,
                annotations={ANNOTATION_STABLE: canary, ANNOTATION_CANARY: None, ANNOTATION_ACTION: "promote"},
                **style)))
            reason = f"the canary {canary} passed its evaluation: promoted to 100%"
        else:
            action = "rollback"
            if stable:
                steps.append(RolloutStep("rollback", f"roll back to {stable}: remove the canary {canary}", _patch(
                    storage_uri=stable, canary_percent=None,
                    annotations={ANNOTATION_STABLE: stable, ANNOTATION_CANARY: None, ANNOTATION_ACTION: "rollback"},
                    **style)))
            else:  # a split made outside mlengine: KServe sends 100% to the previous revision at 0%
                steps.append(RolloutStep("rollback", f"send 0% to the canary {canary}", _patch(
                    canary_percent=0, annotations={ANNOTATION_CANARY: canary, ANNOTATION_ACTION: "rollback"},
                    **style)))
                stable = None
            reason = f"the canary {canary} failed its evaluation: rolled back to {stable or 'the previous revision'}"
        if blessed and new_storage_uri not in (canary, stable) and canary_percent < 100 and stable:
            steps.append(_canary_step(new_storage_uri, stable, canary_percent, style))
            return RolloutDecision(action, reason=reason + f"; then the new model {new_storage_uri} starts a "
                                   f"{canary_percent}% canary", stable_storage_uri=stable,
                                   canary_storage_uri=new_storage_uri, canary_traffic_percent=canary_percent,
                                   steps=steps, **base)
        if blessed and new_storage_uri not in (canary, stable) and stable:
            steps.append(_replace_step(new_storage_uri, style))
            return RolloutDecision(action, reason=reason + f"; then the new model {new_storage_uri} replaces it",
                                   stable_storage_uri=new_storage_uri, steps=steps, **base)
        return RolloutDecision(action, reason=reason, stable_storage_uri=stable, steps=steps,
                               canary_storage_uri=canary if stable is None else None,
                               canary_traffic_percent=0 if stable is None else None, **base)

    if not blessed:
        return RolloutDecision("keep", reason=f"the new model is not blessed: {current} keeps 100% of the traffic",
                               stable_storage_uri=current, **base)
    if new_storage_uri == current:
        return RolloutDecision("keep", reason=f"{current} is already serving 100% of the traffic",
                               stable_storage_uri=current, **base)
    if canary_percent == 100:
        return RolloutDecision("replace", reason=f"canary percent 100: {new_storage_uri} replaces {current}",
                               stable_storage_uri=new_storage_uri, steps=[_replace_step(new_storage_uri, style)],
                               **base)
    return RolloutDecision("canary", reason=f"new blessed model: {canary_percent}% of the traffic to "
                           f"{new_storage_uri}, {100 - canary_percent}% stays on {current}",
                           stable_storage_uri=current, canary_storage_uri=new_storage_uri,
                           canary_traffic_percent=canary_percent,
                           steps=[_canary_step(new_storage_uri, current, canary_percent, style)], **base)


def _canary_step(new_uri: str, stable_uri: str, percent: int, style: dict) -> RolloutStep:
    return RolloutStep("canary", f"start a {percent}% canary of {new_uri}", _patch(
        storage_uri=new_uri, canary_percent=percent,
        annotations={ANNOTATION_STABLE: stable_uri, ANNOTATION_CANARY: new_uri, ANNOTATION_ACTION: "canary"},
        **style))


def _replace_step(new_uri: str, style: dict) -> RolloutStep:
    return RolloutStep("replace", f"serve {new_uri} with 100% of the traffic", _patch(
        storage_uri=new_uri, canary_percent=None,
        annotations={ANNOTATION_STABLE: new_uri, ANNOTATION_CANARY: None, ANNOTATION_ACTION: "replace"}, **style))


_UNSET = object()


def _patch(*, storage_uri: str | None = None, canary_percent: Any = _UNSET, annotations: dict | None = None,
           standard: bool = False, predictor: dict | None = None) -> dict:
    """A JSON merge patch (None deletes a field, RFC 7386).

    Knative: the predictor takes the new storageUri and ``canaryTrafficPercent`` splits revisions.
    Standard: a canary is ``spec.canary[]`` (``predictor``, the current one, with the new storageUri);
    promote, roll back and replace write ``spec.predictor`` and delete ``spec.canary``.
    """
    spec: dict[str, Any] = {}
    if standard and storage_uri is not None and isinstance(canary_percent, int) and canary_percent > 0:
        spec["canary"] = standard_canary(predictor or {}, storage_uri, canary_percent)
    elif standard:
        if storage_uri is not None:
            spec["predictor"] = {"model": {"storageUri": storage_uri}}
        if canary_percent is not _UNSET:
            spec["canary"] = None
    else:
        predictor_patch: dict[str, Any] = {}
        if storage_uri is not None:
            predictor_patch["model"] = {"storageUri": storage_uri}
        if canary_percent is not _UNSET:
            predictor_patch["canaryTrafficPercent"] = canary_percent
        spec["predictor"] = predictor_patch
    patch: dict[str, Any] = {"spec": spec}
    if annotations:
        patch["metadata"] = {"annotations": annotations}
    return patch


# --- applying and waiting -----------------------------------------------------------------------------
