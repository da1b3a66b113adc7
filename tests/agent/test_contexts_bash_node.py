"""Bash and Node.js code contexts (src/guest/bash_kernel.c, src/guest/context/node_kernel.js),
served by the agent on this host with this host's bash and node, driven by raw frames.
The protocol and the Python contexts are covered by test_contexts.py, whose helpers we use."""
import errno
import shutil
import time

import pytest

from conftest import MSG_STDOUT
from test_contexts import (CELL_ERROR, CELL_INTERRUPTED, CELL_OK, CELL_TIMEOUT, CONTEXT_CREATE,
                           CONTEXT_DELETE, CONTEXT_INTERRUPT, CONTEXT_RESTART, MSG_OK,
                           TAG_CONTEXT_ID, TAG_CWD, TAG_ENV, TAG_LANGUAGE, collect, error_of,
                           reply, run, start_run, until_stdout)


@pytest.fixture(scope="module")
def made(agent):
    ids = []
    yield ids
    for cid in ids:
        reply(agent, CONTEXT_DELETE, [(TAG_CONTEXT_ID, cid.encode())])


def create(agent, made, language, *fields):
    mtype, d = reply(agent, CONTEXT_CREATE, [(TAG_LANGUAGE, language.encode())] + list(fields))
    assert mtype == MSG_OK, error_of(d)
    cid = d[TAG_CONTEXT_ID].decode()
    made.append(cid)
    return cid


def interrupt(agent, cid):
    mtype, d = reply(agent, CONTEXT_INTERRUPT, [(TAG_CONTEXT_ID, cid.encode())])
    assert mtype == MSG_OK, error_of(d)


@pytest.fixture(scope="module")
def sh(agent, made):
    return create(agent, made, "bash")


@pytest.fixture(scope="module")
def js(agent, made):
    if not shutil.which("node"):
        pytest.fail("node is not installed: scripts/install-deps installs nodejs")
    return create(agent, made, "node")


# --- bash ---

def test_bash_keeps_variables_functions_and_cwd(agent, sh, tmp_path):
    first = run(agent, sh, f"x=41\ngreet() {{ echo \"hi $1\"; }}\ncd {tmp_path}")
    assert (first.status, first.stdout, first.exception) == (CELL_OK, b"", None)
    second = run(agent, sh, "echo $((x + 1)); greet you; pwd")
    assert second.stdout == f"42\nhi you\n{tmp_path}\n".encode()
    assert second.count == first.count + 1


def test_bash_failing_command_is_an_error_and_state_stays(agent, sh):
    run(agent, sh, "kept=yes")
    c = run(agent, sh, "echo out; echo err >&2; false")
    assert c.status == CELL_ERROR and c.exception[:2] == ("ExitStatus", "1")
    assert (c.stdout, c.stderr) == (b"out\n", b"err\n")
    assert run(agent, sh, "echo $kept").stdout == b"yes\n"


def test_bash_output_streams_while_the_cell_runs(agent, sh):
    c = run(agent, sh, "echo early; sleep 1.5; echo late")
    assert c.stdout == b"early\nlate\n"
    first_out = next(t for t, m in c.frames if m == MSG_STDOUT)
    assert c.frames[-1][0] - first_out > 1.0, c.frames


def test_bash_cell_text_cannot_escape_its_cell(agent, sh):
    # Quotes, a here-document, what looks like our delimiter, and a command reading stdin: the
    # cell is taken as text, and stdin is /dev/null so `cat` cannot eat the next cell.
    code = "cat <<'EOF'\nit's \"quoted\" $HOME `x`\nKILN_CELL_00\nEOF\ncat\necho done"
    c = run(agent, sh, code)
    assert c.status == CELL_OK, c.stderr
    assert c.stdout == b"it's \"quoted\" $HOME `x`\nKILN_CELL_00\ndone\n"
    bad = run(agent, sh, "echo 'unterminated")
    assert bad.status == CELL_ERROR and bad.stderr
    assert run(agent, sh, "echo still-here").stdout == b"still-here\n"


def test_bash_set_e_closed_outputs_and_fake_status_lines(agent, made):
    cid = create(agent, made, "bash")
    # `set -e` stays on for later cells, as in a shell; the context must survive it.
    assert run(agent, cid, "set -e; echo one").stdout == b"one\n"
    assert run(agent, cid, "echo two; set +e").stdout == b"two\n"
    # A cell cannot write to the kernel's status pipe (fd 63 is closed in cells).
    c = run(agent, cid, "printf '0 0\\n' >&63; printf '%070d' 0 >&63; echo after")
    assert c.stdout == b"after\n" and b"Bad file descriptor" in c.stderr, (c.stdout, c.stderr)
    assert run(agent, cid, "echo three").stdout == b"three\n"
    # A cell that closes its stdout: the context goes on (and does not spin).
    run(agent, cid, "exec >/dev/null")
    c = run(agent, cid, "echo gone; echo err >&2")
    assert (c.stdout, c.stderr) == (b"", b"err\n")
    cpu = sum(int(x) for x in open(f"/proc/{kernel_pid(agent, cid)}/stat").read()
              .rsplit(")", 1)[1].split()[11:13])
    time.sleep(1)
    cpu2 = sum(int(x) for x in open(f"/proc/{kernel_pid(agent, cid)}/stat").read()
               .rsplit(")", 1)[1].split()[11:13])
    assert cpu2 - cpu < 20, "the bash kernel spins after the cell closed its stdout"


def kernel_pid(agent, cid):
    from test_contexts import pid_of
    return pid_of(agent, cid)


def test_bash_interrupt_ends_the_whole_cell_and_keeps_state(agent, sh):
    run(agent, sh, "before=kept")
    s = start_run(agent, sh, "echo started; sleep 30; echo after")
    cell = until_stdout(s, b"started\n")       # an interrupt before the cell runs does nothing
    interrupt(agent, sh)
    s.settimeout(20)
    c = collect(s, cell)
    assert c.status == CELL_INTERRUPTED and c.exception[0] == "Interrupted"
    assert b"after" not in c.stdout
    assert run(agent, sh, "echo $before").stdout == b"kept\n"


def test_bash_interrupt_between_cells_does_nothing(agent, sh):
    run(agent, sh, "idle=still")
    interrupt(agent, sh)
    time.sleep(0.3)
    c = run(agent, sh, "echo $idle")
    assert (c.status, c.stdout) == (CELL_OK, b"still\n")


def test_bash_timeout_interrupts_a_shell_loop(agent, sh):
    start = time.monotonic()
    c = run(agent, sh, "while :; do :; done", timeout_ms=500)
    assert c.status == CELL_TIMEOUT, (c.error, c.stderr, c.stdout)
    assert time.monotonic() - start < 10
    assert run(agent, sh, "echo ok").stdout == b"ok\n"


def test_bash_exit_ends_the_context_and_restart_brings_it_back(agent, made):
    cid = create(agent, made, "bash", (TAG_ENV, b"GREETING=hello"))
    c = run(agent, cid, "exit 3")
    assert c.error[0] == errno.EPIPE and "restart" in c.error[1]
    assert reply(agent, CONTEXT_RESTART, [(TAG_CONTEXT_ID, cid.encode())])[0] == MSG_OK
    c = run(agent, cid, "echo $GREETING")
    assert c.stdout == b"hello\n" and c.count == 1


def test_bash_contexts_are_isolated(agent, made, tmp_path):
    a = create(agent, made, "bash", (TAG_CWD, str(tmp_path).encode()))
    b = create(agent, made, "bash")
    run(agent, a, "v=a")
    run(agent, b, "v=b")
    assert run(agent, a, "echo $v; pwd").stdout == f"a\n{tmp_path}\n".encode()
    assert run(agent, b, "echo $v").stdout == b"b\n"


# --- node ---

def test_node_keeps_declarations_and_shows_the_last_value(agent, js):
    first = run(agent, js, "var a = 20; let b = 1; function twice(x) { return 2 * x }")
    assert first.status == CELL_OK and first.results == []
    c = run(agent, js, "twice(a) + b + 1")
    assert c.text() == ["42"] and c.count == first.count + 1
    obj = run(agent, js, "({name: 'kiln', list: [1, 2]})")
    mimes = {m: d for _, m, d in obj.results}
    assert mimes["application/json"] == b'{"name":"kiln","list":[1,2]}'
    assert b"kiln" in mimes["text/plain"]
    assert run(agent, js, "require('os').platform()").text() == ["'linux'"]


def test_node_output_streams_and_an_awaited_promise_is_the_result(agent, js):
    c = run(agent, js, "console.log('early'); console.error('to stderr');"
                       "new Promise(r => setTimeout(() => { console.log('late'); r(7) }, 1500))")
    assert c.stdout == b"early\nlate\n" and c.stderr == b"to stderr\n"
    assert c.text() == ["7"]
    first_out = next(t for t, m in c.frames if m == MSG_STDOUT)
    assert c.frames[-1][0] - first_out > 1.0, c.frames


def test_node_exception_gives_name_value_traceback_and_state_stays(agent, js):
    run(agent, js, "var kept = 'yes'")
    c = run(agent, js, "function inner() { throw new TypeError('bad thing') }\ninner()")
    assert c.status == CELL_ERROR
    name, value, tb = c.exception
    assert (name, value) == ("TypeError", "bad thing")
    assert any("inner" in line for line in tb)
    assert not any("kiln-kernel" in line for line in tb)
    assert run(agent, js, "kept").text() == ["'yes'"]
    thrown = run(agent, js, "throw 5")
    assert thrown.status == CELL_ERROR and thrown.exception[:2] == ("number", "5")
    syntax = run(agent, js, "let = = 1")
    assert syntax.exception[0] == "SyntaxError"


def test_node_hostile_thrown_values_and_huge_errors(agent, js):
    # Values whose name, message or String() throw still give an exception, and the
    # context serves the next cell.
    for code in ["throw Object.create(null)",
                 "const e1 = new Error('x'); e1.message = 5; throw e1",
                 "throw new Proxy({}, {getPrototypeOf() { throw 1 }, get() { throw 2 }})",
                 "const e2 = new Error('y'); Object.defineProperty(e2, 'stack', "
                 "{get() { throw 3 }}); throw e2",
                 "throw new Error('a\\n'.repeat(600000))"]:
        c = run(agent, js, code)
        assert c.status == CELL_ERROR and c.error is None, (code, c.error)
    big = run(agent, js, "const e3 = new Error('m'); e3.name = 'N'.repeat(2000000); throw e3")
    assert big.status == CELL_ERROR and len(big.exception[0]) <= 255
    assert run(agent, js, "'alive'").text() == ["'alive'"]


def test_node_interrupt_breaks_a_busy_loop_and_keeps_state(agent, js):
    run(agent, js, "var before = 'kept'; var n = 0")
    s = start_run(agent, js, "while (true) { n++; if (n === 1) console.log('looping') }")
    cell = until_stdout(s, b"looping\n")       # an interrupt before the cell runs does nothing
    interrupt(agent, js)
    s.settimeout(20)
    c = collect(s, cell)
    assert c.status == CELL_INTERRUPTED and c.exception[0] == "Interrupted"
    assert run(agent, js, "[before, n > 0]").text() == ["[ 'kept', true ]"]


def test_node_timeout_abandons_a_promise_that_never_settles(agent, js):
    c = run(agent, js, "new Promise(() => {})", timeout_ms=500)
    assert c.status == CELL_TIMEOUT
    assert run(agent, js, "1 + 1").text() == ["2"]


def test_unknown_language_names_the_choices(agent):
    mtype, d = reply(agent, CONTEXT_CREATE, [(TAG_LANGUAGE, b"cobol")])
    assert "python, node, bash" in error_of(d)[1]
