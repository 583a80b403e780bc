"""Security: another uid cannot talk to the daemon, its files are owner-only whatever the umask,
and no input can reach eval, pickle or a shell."""

from __future__ import annotations

import ast
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.reliability.conftest import Report
from tests.reliability.harness import faulty_env
from tests.support.common import REPO
from tests.support.library import SynthLibrary

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

NOBODY = 65534
# Connects as another user and prints what happened: "refused <errno name>", or the answer.
CONNECT_AS_OTHER = """
import errno, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
except OSError as err:
    print("refused", errno.errorcode.get(err.errno, err.errno))
    sys.exit(0)
try:
    s.sendall(b'{"jsonrpc": "2.0", "id": 1, "method": "cache.clear"}\\n')
except OSError:
    pass  # closed on us already: read why
data = b""
while not data.endswith(b"\\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print("answer", data.decode().strip())
"""


def as_other_user() -> None:
    os.setgid(NOBODY)
    os.setgroups([])
    os.setuid(NOBODY)


def system_python() -> str:
    """A Python another user may run (the venv's may sit in a directory closed to them)."""
    found = shutil.which("python3", path="/usr/bin:/usr/local/bin:/bin")
    if found is None:
        pytest.skip("no system python3 for another user to run")
    return found


def connect_as_other(sock: Path) -> str:
    done = subprocess.run(
        [system_python(), "-I", "-c", CONNECT_AS_OTHER, str(sock)],
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=as_other_user,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_another_uid_cannot_connect(report: Report) -> None:
    tally = report.case("security")
    lib = SynthLibrary.generate(50)
    with faulty_env(lib.render()) as d:
        d.start()
        d.wait_log("flush_finished")
        with d.client() as c:
            c.cache_put("A", "B", "musicbrainz", data={"year": 1})
        # The socket file and its directory keep other users out...
        tally.tried += 1
        assert connect_as_other(d.socket) == "refused EACCES"
        tally.survived += 1
        # ...and were they opened up by mistake, the daemon itself refuses the peer's uid.
        tally.tried += 1
        os.chmod(d.socket.parent, 0o711)
        os.chmod(d.socket, 0o666)
        mark = d.mark()
        out = connect_as_other(d.socket)
        assert out.startswith("answer "), out
        assert '"code":-32006' in out.replace(" ", ""), out
        # The log is written by its own thread: the line may land just after the answer.
        d.wait_log("connection_refused", after=mark, timeout=10)
        with d.client() as c:
            assert c.cache_get("A", "B", "musicbrainz") is not None
        tally.survived += 1
        assert d.stop()[0] == 0


def test_files_are_owner_only_whatever_the_umask(report: Report) -> None:
    tally = report.case("security")
    tally.tried += 1
    lib = SynthLibrary.generate(50)
    with faulty_env(lib.render()) as d:
        d.preexec = lambda: os.umask(0) and None
        d.start()
        d.wait_log("flush_finished")
        with d.client() as c:
            c.cache_put("A", "B", "musicbrainz", data={"year": 1})
            c.flush()
        problems = []
        for path, want in [
            (d.state_dir, 0o700),
            (d.socket, 0o600),
            (d.log_file, 0o600),
            *((p, 0o600) for p in d.state_dir.iterdir()),
        ]:
            if mode(path) & 0o077:
                problems.append(f"{path.name}: {mode(path):04o}, want {want:04o}")
        socket_dir_mode = mode(d.socket.parent)
        assert d.stop()[0] == 0
    assert not problems, problems
    assert not socket_dir_mode & 0o077
    tally.survived += 1


def test_a_socket_directory_open_to_others_is_refused(report: Report) -> None:
    tally = report.case("security")
    tally.tried += 1
    lib = SynthLibrary.generate(10)
    with faulty_env(lib.render()) as d:
        os.chmod(d.root, 0o755)
        done = d.run_to_exit()
    assert done.returncode != 0
    assert "open to other users" in done.stderr and "Traceback" not in done.stderr
    tally.survived += 1


# -- no input reaches eval, pickle or a shell ----------------------------------------------

DANGEROUS_CALLS = {"eval", "exec", "compile", "__import__", "execfile", "input"}
DANGEROUS_MODULES = {"pickle", "cPickle", "dill", "marshal", "shelve", "yaml", "jsonpickle"}
DANGEROUS_ATTRS = {
    ("os", "system"),
    ("os", "popen"),
    ("os", "execl"),
    ("os", "execlp"),
    ("os", "execv"),
    ("os", "execvp"),
    ("os", "spawnl"),
    ("os", "spawnv"),
    ("subprocess", "getoutput"),
    ("subprocess", "getstatusoutput"),
}
# (file, call or needle) pairs exempt from the checks below: none.
ALLOWED: set[tuple[str, str]] = set()


def dangerous_uses(path: Path, rel: str) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names]
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [
                f"{rel}:{node.lineno}: imports {n}"
                for n in names
                if n.split(".")[0] in DANGEROUS_MODULES
            ]
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in DANGEROUS_CALLS:
                if (rel, func.id) not in ALLOWED:
                    found.append(f"{rel}:{node.lineno}: calls {func.id}()")
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and (func.value.id, func.attr) in DANGEROUS_ATTRS
            ):
                found.append(f"{rel}:{node.lineno}: calls {func.value.id}.{func.attr}()")
            for kw in node.keywords:
                if kw.arg == "shell" and not (
                    isinstance(kw.value, ast.Constant) and kw.value.value is False
                ):
                    found.append(f"{rel}:{node.lineno}: shell= in a call")
    return found


def test_no_eval_pickle_or_shell_in_the_package(report: Report) -> None:
    tally = report.case("security")
    package = REPO / "daemon"
    files = sorted(package.rglob("*.py"))
    tally.tried += len(files)
    found: list[str] = []
    for path in files:
        rel = path.relative_to(REPO).as_posix()
        found += dangerous_uses(path, rel)
    # The same, as plain text, for anything the AST walk could miss (strings run elsewhere).
    for path in files:
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(REPO).as_posix()
        for needle in ("shell=True", "os.system(", "pickle.load", "eval(", "exec("):
            if needle in text and (rel, needle.rstrip("(")) not in ALLOWED:
                found.append(f"{rel}: contains {needle!r}")
    tally.survived += len(files) - len({f.split(":")[0] for f in found})
    assert not found, found
