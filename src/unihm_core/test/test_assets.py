"""Assets lookup: $UNIHM_ASSETS, then ../shared/assets beside the workspace, then the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from unihm_core import assets


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A fake workspace with a shared/assets folder beside it, an env folder and a cache."""
    workspace = tmp_path / "ws" / "main"
    (workspace / "src" / "unihm_msgs").mkdir(parents=True)
    (workspace / "src" / "unihm_msgs" / "package.xml").write_text("<package/>")
    shared = tmp_path / "ws" / "shared" / "assets"
    env = tmp_path / "env_assets"
    home = tmp_path / "home"
    cache = home / ".cache" / "unihm" / "assets"
    for folder in (shared, env, cache):
        folder.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv(assets.WORKSPACE_ENV_VAR, str(workspace))
    monkeypatch.delenv(assets.ENV_VAR, raising=False)
    return {"workspace": workspace, "shared": shared, "env": env, "cache": cache}


def _put(folder: Path, rel: str, text: str) -> None:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_order_env_then_workspace_then_cache(places, monkeypatch) -> None:
    for name in ("env", "shared", "cache"):
        _put(places[name], "hands/a.urdf", name)
    monkeypatch.setenv(assets.ENV_VAR, str(places["env"]))
    assert assets.asset_path("hands/a.urdf").read_text() == "env"
    (places["env"] / "hands" / "a.urdf").unlink()
    assert assets.asset_path("hands/a.urdf").read_text() == "shared"
    (places["shared"] / "hands" / "a.urdf").unlink()
    assert assets.asset_path("hands/a.urdf").read_text() == "cache"


def test_assets_root_is_first_existing_folder(places, monkeypatch) -> None:
    assert assets.assets_root() == places["shared"].resolve()
    monkeypatch.setenv(assets.ENV_VAR, str(places["env"]))
    assert assets.assets_root() == places["env"].resolve()


def test_missing_asset_names_file_and_places(places, monkeypatch) -> None:
    monkeypatch.setenv(assets.ENV_VAR, str(places["env"]))
    with pytest.raises(assets.AssetNotFoundError) as err:
        assets.asset_path("ycb_objects/999_nothing/textured_simple.obj")
    text = str(err.value)
    assert "ycb_objects/999_nothing/textured_simple.obj" in text
    for name in ("env", "shared", "cache"):
        assert str(places[name]) in text
    assert assets.ENV_VAR in text
    assert isinstance(err.value, FileNotFoundError)
    assert len(err.value.searched) == 3


def test_no_assets_folder_anywhere(places, monkeypatch, tmp_path) -> None:
    for name in ("shared", "cache"):
        places[name].rmdir()
    monkeypatch.setenv(assets.ENV_VAR, str(tmp_path / "does_not_exist"))
    with pytest.raises(assets.AssetNotFoundError, match="the assets folder not found"):
        assets.assets_root()


@pytest.mark.parametrize("bad", ["/etc/passwd", "../secrets.txt", "hands/../../x"])
def test_rejects_paths_leaving_the_assets_folder(places, bad) -> None:
    with pytest.raises(ValueError, match="relative to the assets folder"):
        assets.asset_path(bad)


def test_workspace_root_found_from_nested_folder(places, monkeypatch) -> None:
    monkeypatch.delenv(assets.WORKSPACE_ENV_VAR)
    nested = places["workspace"] / "src" / "unihm_core" / "unihm_core"
    nested.mkdir(parents=True)
    assert assets.find_workspace_root([nested]) == places["workspace"]
    assert assets.find_workspace_root([places["workspace"].parent]) is None


def test_this_checkout_finds_the_shared_assets() -> None:
    """In this workspace (and CI) the real assets resolve through the default order."""
    root = assets.assets_root()
    urdf = assets.asset_path("franka_panda_urdf/panda/panda.urdf")
    assert urdf.is_file() and root in urdf.parents
