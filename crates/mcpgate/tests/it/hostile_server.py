"""A hostile stdio MCP server for mcpgate's sandbox tests.

It speaks just enough MCP (newline-delimited JSON-RPC) to offer one tool,
`escape`, which tries to reach past its sandbox in every way the arguments
name and reports each attempt as "denied: ..." or "allowed: ...". The
gateway starts it as `python3 -c <this file's text>`, so it needs no read
access to any directory of the test.
"""
import ctypes
import errno
import json
import os
import socket
import sys
import threading

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
DENIED = (errno.EPERM, errno.EACCES, errno.EROFS)


def attempt(fn):
    try:
        detail = fn()
        return "allowed: %s" % (detail if detail is not None else "ok")
    except OSError as e:
        if e.errno in DENIED:
            return "denied: %s" % os.strerror(e.errno)
        return "allowed: %s" % os.strerror(e.errno or 0)


def check(rc):
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return rc


def read(path, n=64):
    with open(path, "rb") as f:
        return "%d bytes" % len(f.read(n))


def write(path):
    with open(path, "w") as f:
        f.write("pwned")
    return "wrote " + path


def ptrace_attach(pid):
    r = check(libc.ptrace(16, pid, None, None))  # PTRACE_ATTACH
    libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
    return r


class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def vm_read(pid):
    buf = ctypes.create_string_buffer(8)
    local = Iovec(ctypes.cast(buf, ctypes.c_void_p), 8)
    remote = Iovec(0x10000, 8)
    libc.process_vm_readv.restype = ctypes.c_ssize_t
    return check(
        libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    )


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    s.close()
    return "connected to %d" % port


def many_threads(n):
    stop = threading.Event()
    started = 0
    threads = []
    try:
        for _ in range(n):
            t = threading.Thread(target=stop.wait)
            t.start()
            threads.append(t)
            started += 1
    except (RuntimeError, MemoryError, OSError) as e:
        stop.set()
        for t in threads:
            t.join()
        raise OSError(errno.EPERM, "stopped after %d: %s" % (started, e))
    stop.set()
    for t in threads:
        t.join()
    return "started %d" % started


def raw_syscall(nr, *args):
    return check(libc.syscall(nr, *args))


def escape(a):
    gw = a.get("gateway_pid")
    data = a.get("data_dir")
    report = {}
    if data:
        report["list_data_dir"] = attempt(lambda: "%d entries" % len(os.listdir(data)))
        report["write_data_dir"] = attempt(lambda: write(os.path.join(data, "pwned")))
    for name, path in (a.get("read") or {}).items():
        report["read_" + name] = attempt(lambda p=path: read(p))
    if gw:
        report["read_gateway_environ"] = attempt(lambda: read("/proc/%d/environ" % gw))
        report["open_gateway_mem"] = attempt(lambda: read("/proc/%d/mem" % gw, 0))
        report["ptrace_gateway"] = attempt(lambda: ptrace_attach(gw))
        report["process_vm_readv_gateway"] = attempt(lambda: vm_read(gw))
        report["signal_gateway"] = attempt(lambda: os.kill(gw, 0))
    if a.get("port"):
        report["connect_gateway_port"] = attempt(lambda: connect(a["port"]))
    if a.get("threads"):
        report["start_%d_threads" % a["threads"]] = attempt(lambda: many_threads(a["threads"]))
    if a.get("system"):
        # Only ever asked of a sandboxed server: unconfined, as root, these
        # would change the host (a tmpfs over the private HOME, a user namespace).
        home = os.environ["HOME"]
        report["list_root"] = attempt(lambda: "%d entries" % len(os.listdir("/")))
        report["write_tmp"] = attempt(lambda: write("/tmp/mcpgate-hostile-%d" % os.getpid()))
        report["mount_tmpfs_on_home"] = attempt(
            lambda: check(libc.mount(b"none", home.encode(), b"tmpfs", 0, None))
        )
        report["unshare_user_namespace"] = attempt(lambda: check(libc.unshare(0x10000000)))
    for name, nr in (a.get("syscalls") or {}).items():
        report["syscall_" + name] = attempt(lambda nr=nr: raw_syscall(nr, 0, 0, 0, 0, 0))
    if a.get("write_dir"):
        report["write_declared_dir"] = attempt(
            lambda: write(os.path.join(a["write_dir"], "allowed-%d" % os.getpid()))
        )
    report["write_home"] = attempt(lambda: write(os.path.join(os.environ["HOME"], "scratch")))
    report["uid"] = os.getuid()
    return report


def answer(msg_id, result=None, error=None):
    out = {"jsonrpc": "2.0", "id": msg_id}
    if error is not None:
        out["error"] = error
    else:
        out["result"] = result
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


TOOL = {
    "name": "escape",
    "description": "tries to leave the sandbox",
    "inputSchema": {"type": "object"},
}

for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    method, msg_id = msg.get("method"), msg.get("id")
    if msg_id is None:
        continue
    params = msg.get("params") or {}
    if method == "initialize":
        answer(msg_id, {
            "protocolVersion": params.get("protocolVersion", "2025-11-25"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "hostile", "version": "0"},
        })
    elif method == "tools/list":
        answer(msg_id, {"tools": [TOOL]})
    elif method == "tools/call" and params.get("name") == "escape":
        report = escape(params.get("arguments") or {})
        answer(msg_id, {
            "content": [{"type": "text", "text": json.dumps(report)}],
            "structuredContent": report,
        })
    elif method == "ping":
        answer(msg_id, {})
    else:
        answer(msg_id, error={"code": -32601, "message": "method not found"})
