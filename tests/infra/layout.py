"""The stack layout, for template assertions: which stacks a config makes, and how a model stack refers
to the shared stack's resources (an ``Fn::ImportValue`` of an export the shared stack makes under a
name the kit chooses, stacks/shared.py ``SharedRefs``)."""

from __future__ import annotations

from typing import Any

from tests.infra.conftest import Synth


def prefix(synth: Synth) -> str:
    """``<project>-<stage>``, read off the shared stack's name."""
    [shared] = [s.stack_name for s in synth.stacks if s.stack_name.endswith("-shared")]
    return shared.removesuffix("-shared")


def stack_names(synth: Synth) -> list[str]:
    """The stacks the layout promises for the config, in the order the app makes them: the shared one,
    then one per model (the access stack, with ``api_key`` auth, last)."""
    p = prefix(synth)
    names = [f"{p}-shared", *(f"{p}-model-{m.name}" for m in synth.config.models)]
    return names + ([f"{p}-access"] if synth.config.api.auth == "api_key" else [])


def exports(template: dict[str, Any]) -> dict[str, Any]:
    """A template's exports: export name -> the exported value."""
    return {o["Export"]["Name"]: o["Value"] for o in template.get("Outputs", {}).values() if "Export" in o}


def imported(synth: Synth, what: str, value: Any) -> dict[str, str]:
    """What a model stack writes for the shared stack's ``value`` (``{"Ref": ...}``, ``{"Fn::GetAtt":
    ...}``): the import of ``<prefix>-<what>``, after checking that the shared stack exports exactly that
    value under that name."""
    name = f"{prefix(synth)}-{what}"
    shared = exports(synth.shared_json)
    assert name in shared, f"the shared stack exports no {name}: {sorted(shared)}"
    assert shared[name] == value, f"{name} exports {shared[name]}, not {value}"
    return {"Fn::ImportValue": name}
