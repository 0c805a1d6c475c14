// Benchmark peer (issue 7, item 3): an MCP server on the official TypeScript SDK over Streamable
// HTTP (stateful sessions, one McpServer + transport per session, as the SDK's own example), with
// the SDK's bearer-auth middleware. The verifier checks the JWT with `jose`: ES256 signature
// against the authorization server's JWKS, `iss`, `aud` = this server's resource URL, `exp`
// (and `nbf`), `typ` = `at+jwt`. One tool, `echo`, returns its `text` argument.
//
//   node ts-server.mjs --port PORT --issuer ISSUER --resource URL
//
// Dependencies are installed by install.sh (NODE_PATH / cwd = the cached node_modules parent).
// Binds 127.0.0.1 only. Prints "ready" on stdout once listening.
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import express from 'express';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js';
import { InvalidTokenError } from '@modelcontextprotocol/sdk/server/auth/errors.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    issuer: { type: 'string' },
    resource: { type: 'string' },
  },
});
for (const k of ['port', 'issuer', 'resource']) {
  if (!args[k]) {
    console.error(`missing --${k}`);
    process.exit(2);
  }
}
const port = Number(args.port);
const issuer = args.issuer;
const resource = args.resource;

const jwks = createRemoteJWKSet(new URL(`${issuer}/oauth/jwks.json`));

const verifier = {
  async verifyAccessToken(token) {
    let payload;
    try {
      ({ payload } = await jwtVerify(token, jwks, {
        issuer,
        audience: resource,
        algorithms: ['ES256'],
        typ: 'at+jwt',
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (e) {
      throw new InvalidTokenError(`invalid token: ${e.code ?? e.message}`);
    }
    return {
      token,
      clientId: String(payload.client_id ?? ''),
      scopes: typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : [],
      expiresAt: payload.exp,
      resource: new URL(resource),
      extra: { sub: payload.sub },
    };
  },
};

function newServer() {
  const server = new McpServer({ name: 'bench-ts-peer', version: '1.0.0' });
  server.registerTool(
    'echo',
    { description: 'Returns its text argument.', inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: 'text', text }] }),
  );
  return server;
}

const transports = new Map();
const app = express();
app.use(express.json({ limit: '4mb' }));
const auth = requireBearerAuth({ verifier, expectedResource: new URL(resource) });

app.post('/mcp', auth, async (req, res) => {
  const sid = req.header('mcp-session-id');
  let transport = sid ? transports.get(sid) : undefined;
  if (!transport) {
    if (sid || !isInitializeRequest(req.body)) {
      res.status(sid ? 404 : 400).json({
        jsonrpc: '2.0',
        error: { code: -32000, message: sid ? 'unknown session' : 'no session' },
        id: null,
      });
      return;
    }
    transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => transports.set(id, transport),
    });
    transport.onclose = () => {
      if (transport.sessionId) transports.delete(transport.sessionId);
    };
    await newServer().connect(transport);
  }
  await transport.handleRequest(req, res, req.body);
});

const bySession = async (req, res) => {
  const transport = transports.get(req.header('mcp-session-id') ?? '');
  if (!transport) {
    res.status(404).end();
    return;
  }
  await transport.handleRequest(req, res);
};
app.get('/mcp', auth, bySession);
app.delete('/mcp', auth, bySession);

app.get('/healthz', (_req, res) => res.status(200).send('ok'));

app.listen(port, '127.0.0.1', () => console.log('ready'));
