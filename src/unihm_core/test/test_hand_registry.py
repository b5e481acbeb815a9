"""Hand configs: every shipped hand loads, malformed configs name their file and key, overrides."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from unihm_core import cli
from unihm_core.assets import asset_path
from unihm_core.hands import (
    FINGER_NAMES,
    HandConfigError,
    HandKinematics,
    UnknownHandError,
    get_hand_config,
    hand_ids,
    hand_kinematics,
    load_hand_config,
)
from unihm_core.hands.registry import BUILTIN_DIR, ENV_VAR, config_files

SHIPPED = sorted(yaml.safe_load(p.read_text())["id"] for p in BUILTIN_DIR.glob("*.yaml"))
ALLEGRO_DIR = "dex_urdf_hands/robots/hands/allegro_hand"


@pytest.fixture(autouse=True)
def _isolated_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user folder and no $UNIHM_HAND_CONFIGS from the machine running the tests."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(ENV_VAR, raising=False)


def _base(hand_id: str) -> dict[str, Any]:
    return yaml.safe_load((BUILTIN_DIR / f"{hand_id}.yaml").read_text())


def _write(folder: Path, data: dict[str, Any] | str, name: str = "hand.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def test_fourteen_shipped_hands() -> None:
    assert len(SHIPPED) == 14
    assert hand_ids() == SHIPPED


@pytest.mark.parametrize("hand_id", SHIPPED)
def test_shipped_hand_loads_and_builds(hand_id: str) -> None:
    cfg = get_hand_config(hand_id)
    assert cfg.id == hand_id
    assert re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*_(left|right)", hand_id) or \
        hand_id == "panda_gripper"
    assert cfg.side == (hand_id.rsplit("_", 1)[1] if cfg.side != "none" else "none")
    assert cfg.finger_names[0] == "thumb"
    assert list(cfg.finger_names) == [f for f in FINGER_NAMES if f in cfg.fingers]
    assert cfg.urdf_path.is_file()
    kin = hand_kinematics(hand_id)
    assert kin.dof == cfg.dof == len(kin.lower)
    assert bool(kin.within_limits(kin.open_pose))
    assert np.all(kin.lower <= kin.upper)
    tips = kin.keypoints_local(kin.open_pose, "fingertips")
    assert tips.shape == (len(cfg.fingers), 3) and np.all(np.isfinite(tips))
    assert [kin.keypoint_names[i] for i in kin.fingertip_indices] == \
        [f"{f}_tip" for f in cfg.finger_names]


def test_unknown_id_suggests_close_ids() -> None:
    with pytest.raises(UnknownHandError) as err:
        get_hand_config("xhand_rigth")
    message = str(err.value)
    assert "unknown hand 'xhand_rigth'" in message and "Did you mean xhand_right" in message
    assert str(BUILTIN_DIR) in message


def _mutations() -> list[tuple[str, Any, str]]:
    def drop(key: str) -> Any:
        return lambda d: d.pop(key)

    def put(key: str, value: Any) -> Any:
        return lambda d: d.__setitem__(key, value)

    def reorder(d: dict[str, Any]) -> None:
        d["fingers"] = {"index": d["fingers"]["index"], "thumb": d["fingers"]["thumb"]}

    def bad_link(d: dict[str, Any]) -> None:
        d["fingers"]["thumb"][-1] = "no_such_link"

    return [
        ("missing key", drop("joints"), "joints"),
        ("unknown key", put("mout", {"xyz": [0, 0, 0]}), "mout"),
        ("bad side", put("side", "up"), "side"),
        ("joints not a list", put("joints", "joint_0.0"), "joints"),
        ("bad offset", put("palm", {"link": "palm", "offset": [0, "a", 0]}), "palm.offset"),
        ("bad pose", put("mount", {"xyz": [0, 0]}), "mount.xyz"),
        ("bad id", put("id", "My Hand"), "id"),
        ("wrong finger order", reorder, "fingers"),
        ("joint not in URDF", lambda d: d["joints"].__setitem__(5, "joint_99"), "joints[5]"),
        ("link not in URDF", bad_link, "fingers.thumb[3]"),
        ("missing URDF", put("urdf", "./missing/hand.urdf"), "urdf"),
        ("base link moves", put("base_link", "link_1.0"), "base_link"),
        ("open pose outside", put("open_pose", {"joint_1.0": 9.0}), "open_pose.joint_1.0"),
    ]


@pytest.mark.parametrize(("case", "mutate", "key"), _mutations(), ids=[m[0] for m in _mutations()])
def test_malformed_config_names_file_and_key(tmp_path: Path, case: str, mutate: Any,
                                             key: str) -> None:
    data = _base("allegro_right")
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(HandConfigError) as err:
        HandKinematics(load_hand_config(path))
    assert err.value.source == str(path), case
    assert err.value.key == key, (case, str(err.value))
    assert str(path) in str(err.value) and f"'{key}'" in str(err.value)


def test_mimic_joint_listed_names_its_leader(tmp_path: Path) -> None:
    data = _base("inspire_right")
    data["joints"].append("index_intermediate_joint")
    path = _write(tmp_path, data)
    with pytest.raises(HandConfigError, match="mimics 'index_proximal_joint'") as err:
        HandKinematics(load_hand_config(path))
    assert err.value.key == f"joints[{len(data['joints']) - 1}]"


def test_invalid_yaml_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "id: [broken\n")
    with pytest.raises(HandConfigError, match="not valid YAML") as err:
        load_hand_config(path)
    assert err.value.source == str(path)
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(HandConfigError) as err:
        get_hand_config("xhand_right")
    assert err.value.source == str(path)


def test_duplicate_id_in_one_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _base("allegro_right")
    _write(tmp_path, data, "a.yaml")
    second = _write(tmp_path, data, "b.yaml")
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(HandConfigError, match="also defined by") as err:
        config_files()
    assert err.value.source == str(second) and err.value.key == "id"


def test_user_folder_overrides_a_shipped_id(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    data = _base("xhand_right")
    data["name"] = "XHand on my bench"
    data["mount"] = {"xyz": [0, 0, 0.01], "rpy": [0, 0, 0]}
    user = Path(str(tmp_path / "home")) / ".config" / "unihm" / "hands"
    path = _write(user, data, "xhand.yaml")
    cfg = get_hand_config("xhand_right")
    assert cfg.name == "XHand on my bench" and cfg.source == str(path)
    assert cfg.flange_to_wrist[2, 3] == pytest.approx(0.01)
    # $UNIHM_HAND_CONFIGS comes after the user folder: it wins again.
    data["name"] = "XHand from the env folder"
    _write(tmp_path / "env", data, "xhand.yaml")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert get_hand_config("xhand_right").name == "XHand from the env folder"
    assert hand_ids() == SHIPPED


def test_adding_a_new_hand_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """docs/hands.md, "Adding a new hand": a copied URDF under a new robot name and id."""
    folder = tmp_path / "unihm_hands"
    robot = folder / "myhand"
    shutil.copytree(asset_path(ALLEGRO_DIR), robot)
    urdf = robot / "myhand_right.urdf"
    (robot / "allegro_hand_right.urdf").rename(urdf)
    urdf.write_text(urdf.read_text().replace('<robot name="allegro_right">',
                                             '<robot name="myhand_right">'))
    data = _base("allegro_right")
    data.update(id="myhand_right", name="My hand (right)", urdf="./myhand/myhand_right.urdf")
    _write(folder, data, "myhand_right.yaml")
    monkeypatch.setenv(ENV_VAR, str(folder))

    assert "myhand_right" in hand_ids()
    cfg = get_hand_config("myhand_right")
    assert cfg.urdf_path == urdf.resolve()
    ours, shipped = HandKinematics(cfg), hand_kinematics("allegro_right")
    q = shipped.random_configurations(4, rng=0)
    np.testing.assert_allclose(ours.keypoints_local(q), shipped.keypoints_local(q), atol=1e-12)

    png = tmp_path / "myhand_right.png"
    assert cli.main(["hands", "show", "myhand_right", "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "myhand_right" in out and str(urdf.resolve()) in out and "link_15.0_tip" in out
    assert png.stat().st_size > 20_000
