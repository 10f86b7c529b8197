"""``labelandlearn import-annotations`` and ``team`` on a real multi-annotator dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from labelandlearn.cli import app
from shared_data import dataset_path


def invoke(data_dir: Path, *args: str) -> Result:
    result = CliRunner().invoke(app, ["--data-dir", str(data_dir), *args])
    return result


def test_hs_brexit_agreement_via_cli(tmp_path: Path) -> None:
    folder = dataset_path("hs-brexit")
    created = invoke(
        tmp_path, "projects", "create", "--name", "brexit",
        "--label", "hate", "--label", "not_hate",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    imported = invoke(tmp_path, "import", "brexit", str(folder / "hs_brexit.csv"))
    assert imported.exit_code == 0, imported.output
    annotations = invoke(
        tmp_path, "import-annotations", "brexit",
        str(folder / "hs_brexit_annotations_long.csv"), "--json",
    )  # fmt: skip
    assert annotations.exit_code == 0, annotations.output
    report = json.loads(annotations.stdout)
    assert report["answers_created"] == 6720
    assert report["annotators"] == 6

    team = invoke(tmp_path, "team", "brexit", "--json")
    assert team.exit_code == 0, team.output
    stats = json.loads(team.stdout)
    assert stats["cohen_kappa"]["mean"] == pytest.approx(0.347, abs=0.001)
    assert stats["fleiss_kappa"]["kappa"] == pytest.approx(0.347, abs=0.001)
    text = invoke(tmp_path, "team", "brexit")
    assert "Fleiss' kappa: 0.347" in text.stdout


def test_import_annotations_rejects_bad_match(tmp_path: Path) -> None:
    file = tmp_path / "a.csv"
    file.write_text("row_id,annotator_id,label\n0,a,x\n")
    invoke(tmp_path, "projects", "create", "--name", "p", "--label", "x", "--label", "y")
    result = invoke(tmp_path, "import-annotations", "p", str(file), "--match-on", "nope")
    assert result.exit_code == 2
    assert "--match-on must be row or external_id" in result.stderr
