"""kilnd's OpenAI Containers API (/v1/containers), with real python guests: the official
`openai` npm package pointed at kilnd over TCP drives the whole flow (tests/openai/
containers.cjs), and these tests check what the SDK does not: errors for what kilnd does not
do, files the code writes under /mnt/data, other agents, and an idle container expiring while
activity moves its window.

Two containers (two VMs) serve the module: one made here with a two-minute idle window (kept
active while the SDK's flow runs), and the SDK's own, deleted at the end of its flow.  The tests
run in order."""
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import ROOT, busybox_image
from kilnd_helpers import Kilnd, error_of, stop_kilnd

IMAGE = ROOT / "build" / "images" / "python.ext4"
SLOW = 900


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def kilnd(tmp_path_factory):
    if not IMAGE.exists():
        pytest.skip("python image not built (make images)")
    tmp = tmp_path_factory.mktemp("kilndoai")
    port = free_port()
    k = Kilnd(tmp, busybox_image(tmp_path_factory.mktemp("kilndoaiimg")),
              extra_args=["--template", f"python={IMAGE}", "--listen", f"127.0.0.1:{port}"])
    k.port = port
    k.start()
    yield k
    stop_kilnd(k)


@pytest.fixture(scope="module")
def key(kilnd):
    return kilnd.agent(name="oai")["api_key"]


@pytest.fixture(scope="module")
def idle(kilnd, key):
    """A container with a two-minute idle window."""
    status, c = kilnd.request("POST", "/v1/containers",
                              {"name": "idle", "file_ids": [],
                               "expires_after": {"anchor": "last_active_at", "minutes": 2}},
                              key=key)
    assert status == 200, (c, kilnd.log_tail())
    return c


def test_requests_kilnd_cannot_serve_are_refused_by_field(kilnd, key):
    for body, field in (({"name": "x", "file_ids": ["file-abc"]}, "file_ids"),
                        ({"name": "x", "memory_limit": "2g"}, "memory_limit"),
                        ({"name": "x", "expires_after": {"anchor": "created_at",
                                                         "minutes": 5}}, "expires_after"),
                        ({}, "name")):
        st, b = kilnd.request("POST", "/v1/containers", body, key=key)
        assert st == 400 and b["error"]["field"] == field, b
    error_of(kilnd.request("GET", "/v1/containers?limit=101", key=key), 400, "invalid_argument",
             "limit")
    error_of(kilnd.request("GET", "/v1/containers?order=up", key=key), 400, "invalid_argument",
             "order")
    error_of(kilnd.request("GET", "/v1/containers/sb-0000000000000000", key=key), 404,
             "not_found")


def test_container_object_and_files_the_code_writes(kilnd, key, idle):
    assert idle["object"] == "container" and idle["status"] == "running"
    assert idle["expires_after"] == {"anchor": "last_active_at", "minutes": 2}
    assert idle["memory_limit"] == "1g" and idle["name"] == "idle"
    cid = idle["id"]
    # A container is a sandbox: code runs in it, as the image's user, into /mnt/data.
    status, r = kilnd.request("POST", f"/v1/sandboxes/{cid}/code",
                              {"code": "open('/mnt/data/out.txt', 'w').write('hello')",
                               "timeout": SLOW}, key=key)
    assert status == 200 and r["status"] == "ok", r
    status, files = kilnd.request("GET", f"/v1/containers/{cid}/files", key=key)
    assert status == 200, files
    assert files["object"] == "list" and files["has_more"] is False
    [f] = files["data"]
    assert (f["path"], f["bytes"], f["source"], f["container_id"]) == \
        ("/mnt/data/out.txt", 5, "assistant", cid)
    assert files["first_id"] == files["last_id"] == f["id"]
    status, data = kilnd.request("GET", f"/v1/containers/{cid}/files/{f['id']}/content",
                                 key=key)
    assert (status, data) == (200, b"hello")
    # Uploads kilnd cannot take.
    error_of(kilnd.request("POST", f"/v1/containers/{cid}/files", {"file_id": "file-abc"},
                           headers={"Content-Type": "application/json"}, key=key),
             400, "unsupported", "file_id")
    error_of(kilnd.request("POST", f"/v1/containers/{cid}/files", raw=b"--x\r\n",
                           headers={"Content-Type": "multipart/form-data"}, key=key),
             400, "invalid_argument", "file")
    error_of(kilnd.request("GET", f"/v1/containers/{cid}/files/cfile-0/content", key=key),
             404, "file_not_found")
    # Another agent sees no such container.
    mallory = kilnd.agent(name="mallory")["api_key"]
    error_of(kilnd.request("GET", f"/v1/containers/{cid}", key=mallory), 404, "not_found")
    error_of(kilnd.request("GET", f"/v1/containers/{cid}/files", key=mallory), 404,
             "not_found")
    assert kilnd.request("GET", "/v1/containers", key=mallory)[1]["data"] == []


def openai_node_modules():
    d = subprocess.run([str(ROOT / "scripts" / "openai-deps-dir")], capture_output=True,
                       text=True, check=True).stdout.strip()
    modules = os.path.join(d, "node_modules")
    assert os.path.exists(os.path.join(d, ".complete")), \
        f"{d}: the openai SDK is not installed; run scripts/install-deps"
    return modules


class KeptActive:
    """Uses container cid's files every 20 s while in the with-block, so that its two-minute
    idle window outlasts whatever runs meanwhile: the SDK's flow boots a container of its own,
    which can take longer than two minutes in the test host."""

    def __init__(self, kilnd, key, cid):
        self.kilnd, self.key, self.cid = kilnd, key, cid
        self.stop = threading.Event()
        self.errors = []

    def _run(self):
        while not self.stop.wait(20):
            status, body = self.kilnd.request("GET", f"/v1/containers/{self.cid}/files",
                                              key=self.key)
            if status != 200:
                self.errors.append((status, body))

    def __enter__(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(SLOW)
        assert not self.errors, self.errors


def test_official_openai_sdk_drives_the_containers_api(kilnd, key, idle):
    node = shutil.which("node")
    assert node, "node is not installed; run scripts/install-deps"
    env = {**os.environ, "NODE_PATH": openai_node_modules(),
           "KILND_URL": f"http://127.0.0.1:{kilnd.port}/v1", "KILND_KEY": key,
           "OTHER_CONTAINER": idle["id"]}
    with KeptActive(kilnd, key, idle["id"]):
        r = subprocess.run([node, str(ROOT / "tests" / "openai" / "containers.cjs")], env=env,
                           capture_output=True, text=True, timeout=SLOW)
    assert r.returncode == 0, (r.stdout, r.stderr, kilnd.log_tail())
    assert '"listed":2' in r.stdout


def test_idle_container_expires_and_activity_moves_its_window(kilnd, key, idle):
    cid = idle["id"]
    before = kilnd.request("GET", f"/v1/containers/{cid}", key=key)[1]["last_active_at"]
    time.sleep(2)
    assert kilnd.request("GET", f"/v1/containers/{cid}", key=key)[1]["last_active_at"] == before
    assert kilnd.request("GET", f"/v1/containers/{cid}/files", key=key)[0] == 200
    c = kilnd.request("GET", f"/v1/containers/{cid}", key=key)[1]
    assert c["last_active_at"] >= before + 2 and c["status"] == "running"
    deadline = time.monotonic() + 120 + 90
    while c["status"] == "running" and time.monotonic() < deadline:
        time.sleep(5)
        status, c = kilnd.request("GET", f"/v1/containers/{cid}", key=key)
        assert status == 200, c
    assert c["status"] == "expired", c
    assert time.time() - c["last_active_at"] >= 115
    assert kilnd.request("GET", "/v1/containers", key=key)[1]["data"] == []
    error_of(kilnd.request("GET", f"/v1/containers/{cid}/files", key=key), 409,
             "invalid_state")
