"""Bad input and faults, as a hostile user would try them: a corrupt input file is one line and exit 2
on every verb and engine; every training key with an invalid value is one line and exit 2 before any
work; a run that fails (a bad input, or killed mid-way) leaves an earlier complete output byte for
byte; the libraries' own output stays off stderr unless --verbose."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from features.errors import UserError
from features.staged_output import StagedOutput, remove_stale
from pipelines.cli import main
from pipelines.training.config import FIELDS, load_train_config
from tests.test_score import TASKS, candidates
from tests.tiny_models import tiny_artifact

ROOT = Path(__file__).resolve().parent.parent
RANDOM_BYTES = bytes(range(128, 256)) * 80  # not Parquet, not UTF-8 text


def one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "error:" in err[0], (code, err)
    return err[0]


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` with its bytes (hidden ones too)."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    return tiny_artifact(tmp_path_factory.mktemp("faults") / "model", TASKS, noise=0.1, markets=("en-US",))


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("good") / "candidates.parquet"
    candidates().to_parquet(path, index=False)
    return path


# ---------------------------------------------------------------- corrupt input files


@pytest.mark.parametrize("name", ["random.parquet", "random.csv"])
@pytest.mark.parametrize("verb", ["prepare", "score-local", "score-spark"])
def test_a_corrupt_input_file_is_one_line_naming_it(verb, name, artifact, tmp_path, capsys):
    corrupt = tmp_path / name
    corrupt.write_bytes(RANDOM_BYTES)
    if verb == "prepare":
        argv = ["prepare", "--input", str(corrupt), "--task-map", "configs/tasks.yaml"]
    else:
        argv = ["score", "--model", str(artifact), "--candidates", str(corrupt), "--engine", verb.split("-")[1]]
    line = one_line_error(capsys, main([*argv, "--output", str(tmp_path / "out")]))
    assert str(corrupt) in line and "not a" in line


@pytest.mark.parametrize("engine", ["local", "spark"])
def test_a_parquet_file_that_breaks_mid_way_is_one_line_naming_it(engine, artifact, good, tmp_path, capsys):
    """A readable footer, damaged pages: found only while reading, after the run started."""
    broken = tmp_path / "in"
    broken.mkdir()
    (broken / "a.parquet").write_bytes(good.read_bytes())
    rows = candidates(5000, seed=1)
    rows.to_parquet(broken / "b.parquet", index=False, row_group_size=1000)
    data = bytearray((broken / "b.parquet").read_bytes())
    data[4:2000] = RANDOM_BYTES[:1996]  # the first pages, not the footer
    (broken / "b.parquet").write_bytes(bytes(data))
    assert pq.read_metadata(broken / "b.parquet").num_rows == len(rows)  # the check before the run passes it
    code = main(["score", "--model", str(artifact), "--candidates", str(broken), "--engine", engine,
                 "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "b.parquet: not a readable" in err[-1] and "Traceback" not in "".join(err), err
    assert not list((tmp_path / "out").glob(".staging-*"))


def test_a_json_lines_file_of_garbage_is_rejected_row_by_row_not_an_error(artifact, tmp_path):
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b"\x00\xff not json\n{broken\n[1, 2]\n")
    assert main(["score", "--model", str(artifact), "--candidates", str(garbage), "--engine", "local",
                 "--output", str(tmp_path / "out")]) == 0
    import json

    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rejected"] == {"malformed_record": 3} and summary["scored"] == 0


# ---------------------------------------------------------------- training keys

# One invalid value of every training key: a new key must add its own.
INVALID = {
    "method": "prompt", "backbone": "", "rank": -1, "num_up": 0, "temperature": 0, "alpha": 0, "dropout": 1.5,
    "lambda_form": "x", "mixing_init": "x", "target_modules": 5, "head": "x", "head_dropout": 1.0, "pooling": "x",
    "max_length": 4, "segment_in_text": "maybe", "task_sampling_temperature": 0, "tasks": [], "bucket_factor": 0,
    "valid_max_rows": 0, "epochs": -1, "max_steps": -1, "batch_size": 0, "grad_accum": 0, "lr": 0,
    "weight_decay": -1, "task_lr_scale": 0, "lr_schedule": "x", "warmup_ratio": 1, "max_grad_norm": -1,
    "mixed_precision": "x", "seed": -1, "eval_every": -1, "early_stopping_patience": -1, "checkpoint_every": -1,
    "keep_checkpoints": 0, "resume": "x", "log_every": 0, "calibration": "x", "mlflow": "x", "register": "x",
    "backbone_layers": 0, "teacher": "", "distill_alpha": 2, "distill_temperature": 0, "teacher_cache": 5,
    "gradient_checkpointing": "x",
}


def test_every_training_key_has_an_invalid_value_here():
    assert set(INVALID) == set(FIELDS)


@pytest.mark.parametrize("key", sorted(INVALID))
def test_an_invalid_training_value_is_a_user_error(key):
    value = yaml.safe_dump(INVALID[key], default_flow_style=True).strip().removesuffix("...").strip()
    with pytest.raises(UserError, match=key):
        load_train_config(None, [f"{key}={value}"])


def test_an_invalid_training_value_fails_before_any_work(tiny_shards, tmp_path, capsys):
    out = tmp_path / "model"
    line = one_line_error(capsys, main(["train", "--shards", str(tiny_shards), "--set", "rank=-1",
                                        "--output", str(out)]))
    assert "rank must be a positive integer" in line and not out.exists()


# ---------------------------------------------------------------- a failed run never damages a good output


def test_a_failed_score_leaves_the_earlier_output_byte_for_byte(artifact, good, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["score", "--model", str(artifact), "--candidates", str(good), "--engine", "local",
                 "--output", str(out)]) == 0
    before = snapshot(out)
    lacking = tmp_path / "lacking.csv"
    candidates().drop(columns=["market"]).to_csv(lacking, index=False)
    capsys.readouterr()
    code = main(["score", "--model", str(artifact), "--candidates", str(good), str(lacking), "--engine", "local",
                 "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()  # found mid-run: after the progress lines
    assert code == 2 and err[-1].endswith("lacking.csv lacks required columns: market"), err
    assert snapshot(out) == before


def test_a_killed_score_leaves_the_earlier_output_and_the_next_run_clears_its_staging(artifact, good, tmp_path):
    out = tmp_path / "out"
    score = [sys.executable, "-m", "pipelines.cli", "score", "--model", str(artifact), "--engine", "local",
             "--output", str(out)]
    assert subprocess.run([*score, "--candidates", str(good)], capture_output=True, timeout=300).returncode == 0
    before = snapshot(out)
    many = tmp_path / "many.parquet"
    candidates(20_000, seed=3).to_parquet(many, index=False)
    run = subprocess.Popen([*score, "--candidates", str(many), "--batch-rows", "50"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(out.glob(".staging-*/scores/*.parquet")) and time.monotonic() < deadline:
        assert run.poll() is None
        time.sleep(0.2)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    assert list(out.glob(".staging-*")), "the kill came after the run finished"
    assert {k: v for k, v in snapshot(out).items() if not k.startswith(".staging-")} == before
    assert subprocess.run([*score, "--candidates", str(good)], capture_output=True, timeout=300).returncode == 0
    assert not list(out.glob(".staging-*")) and not list(out.glob(".replaced-*"))


def test_staged_output_keeps_a_live_run_s_staging_and_removes_a_dead_one_s(tmp_path):
    out = tmp_path / "out"
    child = subprocess.run([sys.executable, "-c", (
        "import os, sys; sys.path.insert(0, sys.argv[1]);"
        "from features.staged_output import StagedOutput;"
        "s = StagedOutput(sys.argv[2], ('part',), 'done.json'); s.path('part').mkdir();"
        "(s.path('part') / 'x').write_text('half'); os.kill(os.getpid(), 9)"), str(ROOT), str(out)])
    assert child.returncode == -signal.SIGKILL
    dead = list(out.glob(".staging-*"))
    with StagedOutput(out, ("part",), "done.json") as live:
        assert not any(p.exists() for p in dead) and live.staging.is_dir()
        assert remove_stale(out) == [] and live.staging.is_dir()  # its own process is alive
        live.path("part").mkdir()
        (live.path("part") / "x").write_text("whole")
        live.publish("{}\n")
    assert snapshot(out) == {".lock": b"", "part/x": b"whole", "done.json": b"{}\n"}


def test_a_swap_that_fails_half_way_puts_the_earlier_output_back(tmp_path, monkeypatch):
    out = tmp_path / "out"

    def stage(text: str) -> StagedOutput:
        staged = StagedOutput(out, ("a", "b"), "done.json")
        for part in ("a", "b"):
            staged.path(part).mkdir()
            (staged.path(part) / "x").write_text(text)
        return staged

    with stage("first") as first:
        first.publish("first\n")
    before = snapshot(out)
    rename = Path.rename

    def breaking_rename(self: Path, target: Path):  # part b cannot move in, after part a did
        if self.name == "b" and self.parent.name.startswith(".staging-"):
            raise OSError("disk full")
        return rename(self, target)

    with stage("second") as second:
        monkeypatch.setattr(Path, "rename", breaking_rename)
        with pytest.raises(OSError, match="disk full"):
            second.publish("second\n")
        monkeypatch.undo()
    assert snapshot(out) == before


def test_a_swap_killed_half_way_is_put_back_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    with StagedOutput(out, ("a",), "done.json") as staged:
        staged.path("a").mkdir()
        (staged.path("a") / "x").write_text("old")
        staged.publish("old\n")
    before = snapshot(out)
    # what a kill between the renames leaves: the marker and part a aside, a new part a in place
    trash = out / ".replaced-otherhost-1-abc"
    trash.mkdir()
    (out / "done.json").rename(trash / "done.json")
    (out / "a").rename(trash / "a")
    (out / "a").mkdir()
    (out / "a" / "x").write_text("new")
    os.utime(trash, (time.time() - 2 * 86400,) * 2)  # another host's, two days old
    with StagedOutput(out, ("a",), "done.json"):
        pass
    assert snapshot(out) == before


# ---------------------------------------------------------------- the libraries' output


def test_a_spark_verb_s_stderr_holds_adsrel_lines_only_unless_verbose(tmp_path):
    env = {**os.environ, "ADSREL_LOG_DIR": str(tmp_path / "logs")}
    argv = [sys.executable, "-m", "pipelines.cli", "synth", "--rows", "20", "--master", "local[1]"]
    quiet = subprocess.run([*argv, "--output", str(tmp_path / "a")], capture_output=True, text=True, env=env,
                           timeout=300)
    verbose = subprocess.run([*argv, "--output", str(tmp_path / "b"), "--verbose"], capture_output=True, text=True,
                             env=env, timeout=300)
    assert quiet.returncode == verbose.returncode == 0, quiet.stderr + verbose.stderr
    lines = quiet.stderr.strip().splitlines()
    assert lines and all(line.startswith("adsrel synth:") for line in lines), lines
    assert any(not line.startswith("adsrel") for line in verbose.stderr.strip().splitlines())
    assert any(log.read_text() for log in (tmp_path / "logs").glob("synth-*.log"))  # it went to the log


def test_only_a_csv_header_must_be_utf8_text(tmp_path):
    from pipelines.data.inputs import check_input

    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"query,ad_id\ncaf\xe9,1\n")  # a Latin-1 row: the engines' business, not a corrupt file
    assert check_input(str(latin)) == "csv"
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00q\nx\n")
    with pytest.raises(UserError, match="not a CSV file"):
        check_input(str(binary))


@pytest.mark.parametrize("setting", ["epochs=.inf", "lr=.nan", "lr=true"])
def test_a_float_key_must_be_a_finite_number(setting):
    with pytest.raises(UserError, match="must be a finite number"):
        load_train_config(None, [setting])
