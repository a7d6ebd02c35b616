"""Runs the documented Python examples of one document (tests/test_doc_commands.py): an interpreter
that imports the modules the examples import (its arguments) once, then runs each example in a
fork of itself.

A fork is a process of its own (cwd, op registry, globals, seeds die with it) that starts with the
imports done, as `python example.py` would be minus its start-up. The forks come from this fresh
interpreter, never from pytest's: a process that has run autograd or started multiprocessing's
helpers cannot fork a working copy of itself.

Protocol: `python example_runner.py MODULE...`; then one JSON request a line on stdin,
`{"argv": [...], "stdout": FILE, "stderr": FILE}`
(argv as after `python`: a script, `-c CODE` or `-m MODULE`); one JSON reply a line on stdout,
`{"returncode": N}`.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import runpy
import sys
import traceback


def run(argv: list[str]) -> None:
    """What `python ARGV` runs, in this process; sys.argv and sys.path[0] as Python sets them."""
    if argv[0] == "-c":
        sys.argv, sys.path[0] = ["-c", *argv[2:]], ""
        exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
    elif argv[0] == "-m":
        sys.argv, sys.path[0] = [argv[1], *argv[2:]], os.getcwd()
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        script = os.path.abspath(argv[0])
        sys.argv, sys.path[0] = [script, *argv[1:]], os.path.dirname(script)
        runpy.run_path(script, run_name="__main__")


def child(request: dict[str, object]) -> None:
    """The fork: output into the request's files, exit with the example's status; never returns."""
    code = 1
    try:
        for fd, key in ((1, "stdout"), (2, "stderr")):
            os.dup2(os.open(str(request[key]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        argv = request["argv"]
        assert isinstance(argv, list)
        run([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    for module in sys.argv[1:]:
        # one that cannot be imported fails in the example that imports it, with its traceback
        with contextlib.suppress(Exception):
            importlib.import_module(module)
    for line in sys.stdin:
        pid = os.fork()
        if pid == 0:
            child(json.loads(line))
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    main()
