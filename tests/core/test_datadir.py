from __future__ import annotations

from pathlib import Path

from core.datadir import DataDir
from core.settings import Settings


def test_every_path_is_under_the_root_and_distinct() -> None:
    data = DataDir(Path("/srv/kbloop"))
    paths = {
        name: getattr(data, name) for name in dir(DataDir) if isinstance(getattr(DataDir, name), property)
    }
    assert len(paths) >= 14
    assert all(p.is_relative_to("/srv/kbloop") for p in paths.values())
    assert len(set(paths.values())) == len(paths)
    assert data.database == Path("/srv/kbloop/kbloop.db")
    assert data.trainer_state == Path("/srv/kbloop/trainer/state.json")
    assert data.latest_reward == Path("/srv/kbloop/reward/latest.json")


def test_settings_name_their_paths_through_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.data == DataDir(tmp_path)
    assert settings.database_path == tmp_path / "kbloop.db"
    assert settings.models_dir == tmp_path / "models"
    assert settings.resolved_index_dir == tmp_path / "index"
    assert (
        Settings(data_dir=tmp_path, index_dir=tmp_path / "elsewhere").resolved_index_dir
        == tmp_path / "elsewhere"
    )
