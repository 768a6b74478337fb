"""The `cdp` process ends with its command's exit code, also when native threads outlive the command.

The cause of a SIGABRT seen after `cdp erase --now` on a loaded machine: Arrow's I/O pool reads Delta tables through
delta-rs' Python filesystem handler, i.e. native threads call into Python. A thread that needs the GIL while the
interpreter finalizes is ended by CPython with pthread_exit, and the unwinding through Arrow's C++ frames aborts the
whole process. Here a read that outlives the interpreter makes that deterministic.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A parquet file read through a Python filesystem handler (as delta-rs' to_pyarrow_dataset does) whose reads, once
# armed, never finish: the Arrow I/O thread is inside Python when the command ends.
SCRIPT = textwrap.dedent('''
    import sys, threading, time
    import pyarrow as pa, pyarrow.dataset as ds, pyarrow.fs as pafs, pyarrow.parquet as pq

    pq.write_table(pa.table({"a": list(range(100_000))}), sys.argv[1], row_group_size=1_000)
    armed, reading = threading.Event(), threading.Event()

    class Handler(pafs.FileSystemHandler):
        local = pafs.LocalFileSystem()
        def __eq__(self, other): return isinstance(other, Handler)
        def __ne__(self, other): return not self == other
        def get_type_name(self): return "slow"
        def normalize_path(self, path): return path
        def get_file_info(self, paths): return self.local.get_file_info(paths)
        def get_file_info_selector(self, selector): return self.local.get_file_info(selector)
        def open_input_file(self, path):
            inner = self.local.open_input_file(path)
            class File:
                closed = False
                def readable(self): return True
                def seekable(self): return True
                def seek(self, pos, whence=0): return inner.seek(pos, whence)
                def tell(self): return inner.tell()
                def size(self): return inner.size()
                def close(self): inner.close()
                def read(self, n=-1):
                    if armed.is_set():
                        reading.set()
                        while True:
                            time.sleep(0.01)
                    return inner.read(n)
            return pa.PythonFile(File(), mode="r")
        open_input_stream = open_input_file
        def _no(self, *args): raise NotImplementedError
        create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = delete_file = _no
        move = copy_file = open_output_stream = open_append_stream = _no

    fmt = ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=True))
    data = ds.dataset([sys.argv[1]] * 4, filesystem=pafs.PyFileSystem(Handler()), format=fmt)
    armed.set()
    threading.Thread(target=lambda: data.to_table(), daemon=True).start()
    reading.wait()
    if sys.argv[2] == "exit_process":
        from cdp_spark.cli import exit_process
        print("done", flush=False)
        exit_process(3)
    print("done")
    sys.exit(3)
''')


def _run(tmp_path: Path, how: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "t.parquet"), how], capture_output=True,
                          text=True, timeout=120, cwd=REPO)


def test_a_native_thread_inside_python_at_exit_aborts_a_plain_exit(tmp_path):
    """The cause, shown: the command's work is done and its exit code is 3, but the process dies of SIGABRT."""
    done = _run(tmp_path, "sys.exit")
    assert done.stdout == "done\n" and done.returncode == -6, (done.returncode, done.stderr[-500:])


def test_exit_process_ends_with_the_commands_code_and_flushed_output(tmp_path):
    done = _run(tmp_path, "exit_process")
    assert (done.returncode, done.stdout) == (3, "done\n"), done.stderr[-500:]
    assert "Fatal Python error" not in done.stderr and "terminate called" not in done.stderr


@pytest.mark.parametrize("args, code", [(["run", "nosuchstage"], 2), (["config", "check"], 0)])
def test_the_cdp_command_exits_through_exit_process(args, code):
    done = subprocess.run([sys.executable, "-m", "cdp_spark.cli", *args, "--conf", str(REPO / "conf" / "cdp.yaml")],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == code, done.stderr[-500:]
