// Drives a third-party stdio MCP server (npm @modelcontextprotocol/server-filesystem) through
// `mcpgate serve` in no-auth loopback mode, inside mcpgate's default sandbox (ci/sandbox.sh).
// Usage: node check.mjs GATEWAY_URL FILES_DIR. Prints PASS/FAIL lines and a closing count.
import { readFileSync, existsSync } from "node:fs";

const [base, files] = process.argv.slice(2);
let passed = 0, failed = 0;
const check = (ok, what, detail = "") => {
  if (ok) { passed++; console.log(`PASS ${what}`); }
  else { failed++; console.log(`FAIL ${what} ${detail}`); }
};

async function rpc(url, session, id, method, params) {
  const headers = {
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
    "mcp-protocol-version": "2025-11-25",
  };
  if (session) headers["mcp-session-id"] = session;
  const body = id === undefined ? { jsonrpc: "2.0", method, params } : { jsonrpc: "2.0", id, method, params };
  const r = await fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
  const text = await r.text();
  // A JSON body, or the event stream's message answering this id (events
  // without data, such as the priming event, carry none).
  let msg = null;
  try { msg = JSON.parse(text); } catch { /* an event stream, or no body */ }
  for (const line of text.split("\n")) {
    if (!line.startsWith("data:") || line.slice(5).trim() === "") continue;
    try {
      const m = JSON.parse(line.slice(5));
      if (m.id === id) msg = m;
    } catch { /* not a message */ }
  }
  return { status: r.status, session: r.headers.get("mcp-session-id"), msg };
}

async function session(name) {
  const url = `${base}/mcp/${name}`;
  const init = await rpc(url, null, 1, "initialize", {
    protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "sandbox-check", version: "0" },
  });
  if (init.status !== 200) return { url, init };
  await rpc(url, init.session, undefined, "notifications/initialized", {});
  let n = 2;
  const call = (tool, args) => rpc(url, init.session, n++, "tools/call", { name: tool, arguments: args });
  const list = () => rpc(url, init.session, n++, "tools/list", {});
  return { url, init, call, list };
}

const text = (r) => (r.msg?.result?.content ?? []).map((c) => c.text ?? "").join("");

// 1. Declared: the server works in the sandbox with exactly its directory opened.
const s = await session("files");
check(s.init.status === 200 && s.init.msg?.result?.serverInfo, "files: initialize inside the sandbox", JSON.stringify(s.init.msg));
const tools = (await s.list()).msg?.result?.tools?.map((t) => t.name) ?? [];
check(tools.includes("write_file") && tools.includes("read_text_file"), "files: tools/list", tools.join(","));
const target = `${files}/hello.txt`;
let r = await s.call("write_file", { path: target, content: "written in the sandbox" });
check(r.msg?.result && !r.msg.result.isError, "files: write_file in the declared dir", text(r));
check(existsSync(target) && readFileSync(target, "utf8") === "written in the sandbox", "files: the file is on disk");
r = await s.call("read_text_file", { path: target });
check(text(r).includes("written in the sandbox"), "files: read_text_file", text(r));
r = await s.call("list_directory", { path: files });
check(text(r).includes("hello.txt"), "files: list_directory", text(r));

// 2. Not declared: the same server cannot write there (the sandbox, not the server, says no).
const u = await session("files_readonly");
check(u.init.status === 200, "files_readonly: initialize inside the sandbox", JSON.stringify(u.init.msg));
const other = `${files}/not-written.txt`;
r = await u.call("write_file", { path: other, content: "x" });
check(r.msg?.result?.isError === true && !existsSync(other), "files_readonly: write_file refused", text(r));
check(/EACCES|permission denied/i.test(text(r)), "files_readonly: refused by the kernel (EACCES)", text(r));
r = await u.call("read_text_file", { path: target });
check(text(r).includes("written in the sandbox"), "files_readonly: read_text_file of the declared read dir", text(r));

console.log(`sandbox: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
