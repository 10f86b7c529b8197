"""The command line through Typer's CliRunner, on a SQLite database in a temporary folder."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from labelandlearn.cli import app
from labelandlearn.cli.data import parse_label_map
from labelandlearn.cli.projects import parse_label
from labelandlearn.errors import ValidationError

SPAM_WORDS = ["win", "prize", "free", "money", "claim", "offer", "cash", "winner"]
HAM_WORDS = ["meeting", "lunch", "report", "project", "tomorrow", "agenda", "notes", "call"]


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    runner = CliRunner()
    data_dir = tmp_path / "data"

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(app, ["--data-dir", str(data_dir), *args], input=input)

    return invoke


def assert_one_line_error(result: Result, code: int, fragment: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert fragment in lines[0]


def spam_texts(count: int, seed: int) -> list[tuple[str, str]]:
    """Return (text, label) pairs that a bag-of-words model separates easily."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        label = "spam" if index % 2 == 0 else "ham"
        words = rng.choices(SPAM_WORDS if label == "spam" else HAM_WORDS, k=6)
        rows.append((f"{' '.join(words)} {index}", label))
    return rows


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def create_spam_project(run, name: str = "mail") -> None:  # type: ignore[no-untyped-def]
    result = run("projects", "create", "--name", name, "--label", "spam:s:#d62728",
                 "--label", "ham:h", "--text-column", "body", "--label-column", "kind")
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------- parsing


def test_parse_label_forms() -> None:
    assert parse_label("spam").name == "spam"
    full = parse_label("spam:s:#d62728")
    assert (full.name, full.key, full.color) == ("spam", "s", "#d62728")
    assert parse_label("ham::#00ff00").key is None


@pytest.mark.parametrize("raw", [":s", "a:b:c:d", "  "])
def test_parse_label_rejects(raw: str) -> None:
    with pytest.raises(ValidationError):
        parse_label(raw)


def test_parse_label_map() -> None:
    assert parse_label_map("-1=negative, 0=useless,1=positive") == {
        "-1": "negative",
        "0": "useless",
        "1": "positive",
    }
    assert parse_label_map(None) is None


@pytest.mark.parametrize("raw", ["1", "1=", "=spam", "1=a,1=b"])
def test_parse_label_map_rejects(raw: str) -> None:
    with pytest.raises(ValidationError):
        parse_label_map(raw)


# --------------------------------------------------------------------------- projects


def test_projects_table_names_whole(run, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COLUMNS", "80")
    created = run("projects", "create", "--name", "a project with a rather long name for tweets",
                  "--label", "useless", "--label", "positive", "--label", "negative",
                  "--model", "tfidf-embedding-linear", "--strategy", "least-confidence")
    assert created.exit_code == 0, created.output
    table = run("projects", "list").stdout
    # Model and strategy names are typed back into commands, so they are never cut.
    assert "tfidf-embedding-linear" in table
    assert "least-confidence" in table
    assert "…" not in table
    assert max(map(len, table.splitlines())) <= 80


def test_projects_create_list_edit_delete(run) -> None:  # type: ignore[no-untyped-def]
    create_spam_project(run)

    listed = run("projects", "list", "--json")
    assert listed.exit_code == 0, listed.output
    projects = json.loads(listed.stdout)
    assert [project["name"] for project in projects] == ["mail"]
    labels = projects[0]["labels"]
    assert [(label["name"], label["key"]) for label in labels] == [("spam", "s"), ("ham", "h")]
    assert labels[0]["color"] == "#d62728"
    assert projects[0]["text_column"] == "body"

    edited = run("projects", "edit", "mail", "--name", "inbox", "--label", "spam",
                 "--label", "ham", "--label", "unsure:u", "--retrain-every", "10")
    assert edited.exit_code == 0, edited.output
    project = json.loads(run("projects", "list", "--json").stdout)[0]
    assert project["name"] == "inbox"
    assert project["retrain_every"] == 10
    assert [label["name"] for label in project["labels"]] == ["spam", "ham", "unsure"]
    # Labels matched by name keep their id, key and colour.
    assert project["labels"][0]["id"] == labels[0]["id"]
    assert project["labels"][0]["key"] == "s"

    table = run("projects", "list")
    assert "inbox" in table.stdout

    deleted = run("projects", "delete", "inbox", "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert json.loads(run("projects", "list", "--json").stdout) == []


def test_projects_delete_asks_first(run) -> None:  # type: ignore[no-untyped-def]
    create_spam_project(run)
    result = run("projects", "delete", "mail")  # no input: the confirmation is declined
    assert result.exit_code != 0
    assert "with 0 items, 0 of them labelled?" in result.output
    assert len(json.loads(run("projects", "list", "--json").stdout)) == 1


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["--label", "a", "--label", "A"], 2, "used twice"),
        (["--label", "only"], 2, "2 to 50 labels"),
        (["--label", "a: ", "--label", "b"], 2, "taken by the labelling screen"),
        (["--label", "a:x", "--label", "b:x"], 2, "already the key"),
        (["--label", "a::red", "--label", "b"], 2, "#rrggbb"),
        (["--label", "a", "--label", "b", "--model", "nope"], 2, "unknown model"),
        (["--label", "a", "--label", "b", "--retrain-every", "0"], 2,
         "retrain interval must be between 1 and 100000 answers, got 0"),
    ],
)
def test_projects_create_rejects(run, args: list[str], code: int, fragment: str) -> None:  # type: ignore[no-untyped-def]
    result = run("projects", "create", "--name", "p", *args)
    assert_one_line_error(result, code, fragment)


def test_projects_create_duplicate_name(run) -> None:  # type: ignore[no-untyped-def]
    create_spam_project(run)
    result = run("projects", "create", "--name", "mail", "--label", "a", "--label", "b")
    assert_one_line_error(result, 1, "already exists")


def test_unknown_project_is_one_line(run) -> None:  # type: ignore[no-untyped-def]
    for args in (["projects", "delete", "ghost", "--yes"], ["train", "ghost"],
                 ["projects", "edit", "42", "--name", "x"]):
        assert_one_line_error(run(*args), 2, "not found")


def test_invalid_setting_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELANDLEARN_MAX_UPLOAD_MB", "lots")
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "projects", "list"])
    assert_one_line_error(result, 2, "LABELANDLEARN_MAX_UPLOAD_MB")


def test_db_upgrade(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert "newest schema version" in result.stdout
    assert (tmp_path / "data" / "labelandlearn.db").exists()


def test_users_create_admin(run) -> None:  # type: ignore[no-untyped-def]
    password = "correct horse battery staple 42"
    result = run("users", "create", "alice", "--admin", input=f"{password}\n{password}\n")
    assert result.exit_code == 0, result.output
    assert "created admin 'alice'" in result.stdout
    again = run("users", "create", "alice", input=f"{password}\n{password}\n")
    assert again.exit_code == 1
    assert "already exists" in again.stderr


def test_users_create_weak_password(run) -> None:  # type: ignore[no-untyped-def]
    result = run("users", "create", "bob", input="password\npassword\n")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")


# --------------------------------------------------------------------------- import


def test_import_reports_row_errors(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    create_spam_project(run)
    rows = [[text, "1" if label == "spam" else "0"] for text, label in spam_texts(20, seed=1)]
    rows[4][0] = ""  # line 6 of the file: empty text
    rows[9][1] = "7"  # line 11: a label value the map does not know
    rows.append(list(rows[0]))  # an exact duplicate text
    path = write_csv(tmp_path / "mail.csv", ["body", "kind"], rows)

    result = run("import", "mail", str(path), "--label-map", "1=spam,0=ham", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows_read"] == 21
    assert report["rows_with_errors"] == 2
    assert [error["line"] for error in report["row_errors"]] == [6, 11]
    assert report["duplicates_skipped"] == 1
    assert report["rows_imported"] == 18
    assert report["rows_labelled"] == 18

    text = run("import", "mail", str(path), "--label-map", "1=spam,0=ham")
    assert text.exit_code == 0, text.output
    assert "line 6:" in text.stdout
    assert "line 11:" in text.stdout


def test_import_report_counts_one_row(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    create_spam_project(run)
    path = write_csv(tmp_path / "one.csv", ["body", "kind"], [["win a prize now", "1"]])

    result = run("import", "mail", str(path), "--label-map", "1=spam,0=ham")

    assert result.exit_code == 0, result.output
    assert "read 1 row in" in result.stdout
    assert "imported 1 item (1 with a label); 0 rows with errors" in result.stdout


def test_import_missing_column_imports_nothing(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    create_spam_project(run)
    path = write_csv(tmp_path / "wrong.csv", ["message", "kind"], [["hello", "1"]])
    result = run("import", "mail", str(path))
    assert_one_line_error(result, 2, "message")
    project = json.loads(run("projects", "list", "--json").stdout)[0]
    assert project["items_total"] == 0


def test_import_empty_file(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    create_spam_project(run)
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert_one_line_error(run("import", "mail", str(path)), 2, "empty")


def test_import_missing_file(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    create_spam_project(run)
    result = run("import", "mail", str(tmp_path / "absent.csv"))
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_import_rejects_bad_duplicates_mode(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    create_spam_project(run)
    path = write_csv(tmp_path / "mail.csv", ["body", "kind"], [["hello there", ""]])
    assert_one_line_error(run("import", "mail", str(path), "--duplicates", "merge"), 2, "skip")


# --------------------------------------------------------------------------- learn, export, predict


@pytest.fixture
def trained(run, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A project with 80 labelled and 20 unlabelled items and a trained model."""
    create_spam_project(run)
    labelled = [[text, label] for text, label in spam_texts(80, seed=2)]
    unlabelled = [[text, ""] for text, _label in spam_texts(20, seed=3)]
    path = write_csv(tmp_path / "mail.csv", ["body", "kind"], labelled + unlabelled)
    imported = run("import", "mail", str(path))
    assert imported.exit_code == 0, imported.output
    result = run("train", "mail", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_train_prints_cross_validated_metrics(run, trained) -> None:  # type: ignore[no-untyped-def]
    metrics = trained["metrics"]
    assert metrics["macro_f1"] > 0.9
    assert set(metrics["per_class"]) == {"spam", "ham"}

    table = run("train", "mail")
    assert table.exit_code == 0, table.output
    assert "macro-F1" in table.stdout
    # Without a terminal the progress comes as plain lines, one per further tenth.
    steps = [line for line in table.stderr.splitlines() if line.startswith("Training")]
    assert steps, table.stderr
    assert steps[-1] == "Training: 100%"
    assert len(steps) <= 10


def test_train_with_too_few_labels(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    create_spam_project(run)
    path = write_csv(tmp_path / "few.csv", ["body", "kind"], [["win money", "spam"]])
    assert run("import", "mail", str(path)).exit_code == 0
    result = run("train", "mail")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stderr.strip().startswith("error: ")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_labelled(run, trained, tmp_path: Path, fmt: str) -> None:  # type: ignore[no-untyped-def]
    output = tmp_path / f"out.{fmt}"
    result = run("export", "mail", "--format", fmt, "--output", str(output))
    assert result.exit_code == 0, result.output
    content = output.read_text(encoding="utf-8")
    if fmt == "csv":
        rows = list(csv.DictReader(content.splitlines()))
    else:
        rows = [json.loads(line) for line in content.splitlines() if line.strip()]
    assert len(rows) == 80
    assert {row["label"] for row in rows} == {"spam", "ham"}


def test_export_unknown_format(run, trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run("export", "mail", "--output", str(tmp_path / "out.xml"))
    assert_one_line_error(result, 2, "--format")


def write_predict_input(path: Path) -> list[str]:
    texts = [text for text, _label in spam_texts(40, seed=9)]
    write_csv(path, ["id", "body"], [[str(index), text] for index, text in enumerate(texts)])
    return texts


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_predict_with_project_keeps_label(run, trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "incoming.csv"
    write_predict_input(source)
    every = tmp_path / "all.csv"
    result = run("predict", "mail", str(source), "--output", str(every), "--text-column", "body")
    assert result.exit_code == 0, result.output
    rows = read_rows(every)
    assert len(rows) == 40
    assert {"id", "body"} <= set(rows[0])
    predicted = [row for row in rows if any(key.startswith("pred") for key in row)]
    assert len(predicted) == 40

    kept = tmp_path / "spam.csv"
    result = run("predict", "mail", str(source), "--output", str(kept), "--keep", "spam",
                 "--text-column", "body")
    assert result.exit_code == 0, result.output
    kept_rows = read_rows(kept)
    # The generated spam texts are the even ids; the model separates them perfectly.
    assert sorted(int(row["id"]) for row in kept_rows) == list(range(0, 40, 2))


def test_predict_warns_of_empty_texts(run, trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "incoming.csv"
    source.write_text("id,body\n1,cheap pills now\n2,\n3,  \n", encoding="utf-8")
    result = run("predict", "mail", str(source), "--output", str(tmp_path / "out.csv"),
                 "--text-column", "body")
    assert result.exit_code == 0, result.output
    assert "warning: 2 rows have an empty text in column 'body'" in result.stderr


def test_export_model_then_predict(run, trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model_file = tmp_path / "mail.model"
    result = run("export-model", "mail", "--output", str(model_file))
    assert result.exit_code == 0, result.output
    assert model_file.stat().st_size > 0

    source = tmp_path / "incoming.csv"
    write_predict_input(source)
    output = tmp_path / "ham.csv"
    result = run("predict", str(model_file), str(source), "--output", str(output),
                 "--keep", "ham", "--text-column", "body")
    assert result.exit_code == 0, result.output
    assert sorted(int(row["id"]) for row in read_rows(output)) == list(range(1, 40, 2))


def test_predict_unknown_keep_label(run, trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "incoming.csv"
    write_predict_input(source)
    result = run("predict", "mail", str(source), "--output", str(tmp_path / "x.csv"),
                 "--keep", "eggs", "--text-column", "body")
    assert_one_line_error(result, 2, "eggs")


def test_embed_then_train_uses_embeddings(run, trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data_dir = tmp_path
    before = run("train", "mail")
    assert before.exit_code == 0, before.output
    assert "run `labelandlearn embed mail`" in before.stdout

    embedded = run("embed", "mail")
    assert embedded.exit_code == 0, embedded.output
    assert "have a multilingual-e5-small embedding" in embedded.stdout
    # The vectors go to the folder that --data-dir names.
    assert (data_dir / "data" / "embeddings" / "embeddings.sqlite3").is_file()

    after = run("train", "mail", "--json")
    assert after.exit_code == 0, after.output
    assert json.loads(after.stdout)["metrics"]["embeddings"]["status"] == "used"
    again = run("train", "mail")
    assert "labelandlearn embed" not in again.stdout


def test_train_auto_names_its_choice(run, trained) -> None:  # type: ignore[no-untyped-def]
    assert run("projects", "edit", "mail", "--model", "auto").exit_code == 0

    result = run("train", "mail")

    assert result.exit_code == 0, result.output
    assert "(auto, chose tfidf-" in result.stdout


def test_import_and_strategy_change_rescore(run, trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    more = [[text, ""] for text, _label in spam_texts(5, seed=4)]
    path = write_csv(tmp_path / "more.csv", ["body", "kind"], more)
    imported = run("import", "mail", str(path), "--json")
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.stdout)["items_scored"] == 25

    edited = run("projects", "edit", "mail", "--strategy", "file-order")
    assert edited.exit_code == 0, edited.output
    assert "rescored 25 unlabelled items with file-order" in edited.stdout
