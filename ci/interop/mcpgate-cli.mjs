// Interop: mcpgate's own client (the `mcpgate login|tools|call` CLI, crates/mcpgate-client)
// against `mcpgate serve --demo`, driven from outside like a user would: the CLI runs with
// --no-browser, prints the authorization URL, and the headless user agent signs in and approves
// on the real pages, then delivers the redirect to the CLI's loopback listener. Run by
// ci/interop.sh, which passes:
//   MCPGATE_BIN, MCPGATE_URL, MCPGATE_PASSWORD, MCPGATE_NEW_PASSWORD, RESULT_FILE (optional)
// Prints `PASS name` / `FAIL name` per check; exits non-zero on any FAIL.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Results, UserAgent, mcpgateClientFlow } from './headless.mjs';

const { MCPGATE_BIN: BIN, MCPGATE_URL: BASE, MCPGATE_PASSWORD: PASSWORD } = process.env;
if (!BIN || !BASE || !PASSWORD) { console.error('MCPGATE_BIN, MCPGATE_URL, MCPGATE_PASSWORD required'); process.exit(2); }
const version = execFileSync(BIN, ['--version'], { encoding: 'utf8' }).trim().split(/\s+/).pop();
const res = new Results();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpgate-interop-cli-'));
try {
  const ua = new UserAgent({ password: PASSWORD, newPassword: process.env.MCPGATE_NEW_PASSWORD });
  await mcpgateClientFlow(res, { bin: BIN, url: `${BASE}/mcp/notes`, issuer: BASE, ua, dir });
} catch (e) {
  res.check('flow', false, e.stack || String(e));
  res.notReached(['discovery', 'registration', 'authcode', 'tools', 'stepup', 'refresh'], String(e.message || e));
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
res.write(process.env.RESULT_FILE, { client: 'mcpgate client (`mcpgate login`, `tools`, `call`)', version });
process.exit(res.failed ? 1 : 0);
