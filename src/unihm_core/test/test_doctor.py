"""Doctor findings: a failing probe becomes a finding with its fix, never a crash."""

from __future__ import annotations

import json

from unihm_core import doctor


def test_failing_required_probe_is_reported_with_its_fix(monkeypatch, capsys) -> None:
    def broken() -> doctor.Check:
        import unihm_no_such_module  # noqa: F401

        raise AssertionError("unreachable")

    monkeypatch.setattr(doctor, "PROBES", [
        doctor.Probe("python", doctor._python),
        doctor.Probe("widget", broken, fix="pip install widget"),
        doctor.Probe("extra", broken, required=False),
    ])
    results = doctor.run_checks()
    assert [(c.name, c.ok) for c in results] == [("python", True), ("widget", False),
                                                 ("extra", False)]
    assert "ModuleNotFoundError" in results[1].detail and results[1].fix == "pip install widget"
    assert doctor.report(results, as_json=True) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is False


def test_optional_failure_does_not_fail_the_doctor(monkeypatch) -> None:
    def broken() -> doctor.Check:
        raise ImportError("no moveit here")

    monkeypatch.setattr(doctor, "PROBES", [doctor.Probe("moveit_py", broken, required=False)])
    assert doctor.report(doctor.run_checks(), as_json=True) == 0


def test_control_msgs_hashes_checked_against_jazzy() -> None:
    check = doctor._control_msgs()
    assert check.ok, check.detail
    assert "type hashes match Jazzy" in check.detail
