"""Progress: quiet under the chain, a status line in the progress file, one terminal line in the chain."""

import io
import time

import pytest

from flake_lib import progress


@pytest.fixture
def status_file(tmp_path, monkeypatch):
    path = tmp_path / "status.txt"
    monkeypatch.setenv(progress.FILE_ENV, str(path))
    monkeypatch.setattr(progress, "FILE_INTERVAL", 0.0)
    return path


def test_quiet_follows_the_environment(monkeypatch):
    monkeypatch.delenv(progress.QUIET_ENV, raising=False)
    assert not progress.quiet()
    for value, expected in (("1", True), ("yes", True), ("0", False), ("", False), ("false", False)):
        monkeypatch.setenv(progress.QUIET_ENV, value)
        assert progress.quiet() is expected


def test_quiet_bar_draws_nothing_and_yields_everything(monkeypatch, capsys):
    monkeypatch.setenv(progress.QUIET_ENV, "1")
    items = list(progress.progress(range(50), desc="train F epoch 1/3"))
    assert items == list(range(50))
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_bar_is_drawn_when_not_quiet(monkeypatch, capsys):
    monkeypatch.delenv(progress.QUIET_ENV, raising=False)
    bar = progress.progress(range(5), desc="decode", mininterval=0)
    assert not bar.bar.disable
    assert list(bar) == list(range(5))
    bar.close()
    assert "decode" in capsys.readouterr().err  # tqdm's text bar outside a notebook


def test_status_line_has_model_epoch_count_eta_and_metric(monkeypatch, status_file):
    monkeypatch.setenv(progress.QUIET_ENV, "1")
    bar = progress.progress(range(10), desc="cifar10-resnet F epoch 3/7")
    seen = []
    for i in bar:
        bar.set_postfix(loss=f"{1 / (i + 1):.4f}")
        seen.append(status_file.read_text() if i else None)  # item i is read after i items are done
    assert seen[5].startswith("cifar10-resnet F epoch 3/7 · 5/10 (50 %) · ")
    assert "left" in seen[5] and "loss=0.2000" in seen[5]
    assert status_file.read_text().startswith("cifar10-resnet F epoch 3/7 · 10 done in 0:00")


def test_disabled_bar_writes_no_status(status_file):
    assert list(progress.progress(range(3), desc="x", enabled=False)) == [0, 1, 2]
    assert not status_file.exists()


def test_status_is_throttled_and_atomic(monkeypatch, status_file):
    monkeypatch.setattr(progress, "FILE_INTERVAL", 3600.0)
    assert progress.status("first", force=True)
    assert not progress.status("second")  # within the interval
    assert status_file.read_text() == "first"
    assert progress.status("third\nline", force=True)
    assert status_file.read_text() == "third line"  # one line, whatever it is given
    assert [p.name for p in status_file.parent.iterdir()] == ["status.txt"]  # no temporary left


def test_status_without_file_is_a_no_op(monkeypatch):
    monkeypatch.delenv(progress.FILE_ENV, raising=False)
    assert progress.status("anything", force=True) is False


@pytest.mark.parametrize("seconds, text", [(0, "0:00"), (75.2, "1:15"), (3725, "1:02:05"), (None, "?"),
                                           (float("nan"), "?"), (float("inf"), "?")])
def test_format_seconds(seconds, text):
    assert progress.format_seconds(seconds) == text


def test_status_line_on_a_terminal_rewrites_one_line(tmp_path):
    path = tmp_path / "status.txt"
    stream = io.StringIO()
    line = progress.StatusLine("[2/6] 02-parity-training", path, stream=stream, tty=True, width=60)
    path.write_text("cifar10-resnet F epoch 3/7 · 5/10 (50 %)")
    line.tick()
    path.write_text("short")
    line.tick()
    line.stop()  # never started: clears the line
    text = stream.getvalue()
    assert "\n" not in text and text.count("\r") == 4  # two updates, then cleared
    first, second = text.split("\r")[1:3]
    assert first.startswith("[2/6] 02-parity-training [0:00] cifar10-resnet F epoch 3/7")
    assert len(first) <= 59 and len(second) == len(first)  # padded over the longer previous line
    assert text.endswith("\r")


def test_status_line_in_a_log_prints_changes_at_most_every_interval(tmp_path):
    path = tmp_path / "status.txt"
    stream = io.StringIO()
    line = progress.StatusLine("[1/1] 03", path, stream=stream, tty=False, interval=3600)
    line.tick()  # no status yet: nothing
    path.write_text("epoch 1/3")
    line.tick()
    path.write_text("epoch 2/3")
    line.tick()  # within the interval: not printed
    assert stream.getvalue().splitlines() == ["[1/1] 03 [0:00] epoch 1/3"]
    line.interval = 0
    line.tick()
    line.tick()  # unchanged: not printed again
    assert stream.getvalue().splitlines()[1:] == ["[1/1] 03 [0:00] epoch 2/3"]


def test_status_line_thread_follows_the_file_and_stops(tmp_path):
    path = tmp_path / "status.txt"
    stream = io.StringIO()
    with progress.StatusLine("[1/1] nb", path, stream=stream, tty=True, poll=0.01, width=80):
        path.write_text("working")
        deadline = time.monotonic() + 10
        while "working" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
    assert "[1/1] nb" in stream.getvalue() and "working" in stream.getvalue()


def test_watch_notebook_sets_and_restores_the_kernel_environment(monkeypatch):
    monkeypatch.delenv(progress.QUIET_ENV, raising=False)
    monkeypatch.setenv(progress.FILE_ENV, "/somewhere/else")
    stream = io.StringIO()
    with progress.watch_notebook("[1/2] 01-trace", enabled=True, stream=stream) as line:
        import os

        assert os.environ[progress.QUIET_ENV] == "1"
        path = os.environ[progress.FILE_ENV]
        assert path != "/somewhere/else" and line.path == path
        progress.status("loading the trace", force=True)
        line.tick()
    assert "[1/2] 01-trace" in stream.getvalue() and "loading the trace" in stream.getvalue()
    assert os.environ[progress.FILE_ENV] == "/somewhere/else" and progress.QUIET_ENV not in os.environ
    with progress.watch_notebook("[2/2] 02", enabled=False, stream=stream) as line:
        assert line is None and progress.FILE_ENV not in os.environ and progress.quiet()


def test_papermill_options_keep_outputs_clean(monkeypatch, tmp_path):
    options = progress.papermill_options()
    assert options["progress_bar"] is False and options["coalesce_streams"] is True
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / ("long" * 30)))
    assert "config" not in progress.papermill_options()  # an IPC socket path would not fit: TCP
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", "/tmp/rt")
    assert progress.papermill_options()["config"].KernelManager.transport == "ipc"


def test_log_lines_go_to_the_log_file_under_the_chain_and_print_otherwise(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv(progress.LOG_ENV, raising=False)
    progress.log_line("epoch 1: loss 2.0")
    assert capsys.readouterr().out == "epoch 1: loss 2.0\n"
    log = tmp_path / "03-distillation.log"
    monkeypatch.setenv(progress.LOG_ENV, str(log))
    progress.log_line("epoch 1: loss 2.0")
    progress.log_line("epoch 2: loss 1.5\n")
    assert capsys.readouterr().out == "" and log.read_text() == "epoch 1: loss 2.0\nepoch 2: loss 1.5\n"
