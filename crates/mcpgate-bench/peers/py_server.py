"""Benchmark peer (issue 7, item 3): an MCP server on the official Python SDK (PyPI `mcp` 2.x,
whose FastMCP is now `MCPServer`) over Streamable HTTP under uvicorn, with the SDK's token-verifier
auth (`TokenVerifier` + `AuthSettings`). The verifier checks the JWT with PyJWT[crypto]: ES256
signature against the authorization server's JWKS, `iss`, `aud` = this server's resource URL,
`exp`, `typ` = `at+jwt`. One tool, `echo`, returns its `text` argument.

    python py_server.py --port PORT --issuer ISSUER --resource URL

Binds 127.0.0.1 only. Prints "ready" on stdout once uvicorn listens.
"""

import argparse
import asyncio
import sys

import jwt
import uvicorn
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--issuer", required=True)
    ap.add_argument("--resource", required=True)
    args = ap.parse_args()

    jwks = jwt.PyJWKClient(f"{args.issuer}/oauth/jwks.json", cache_keys=True, lifespan=3600)

    class JwtVerifier:
        async def verify_token(self, token: str) -> AccessToken | None:
            try:
                header = jwt.get_unverified_header(token)
                if header.get("typ") != "at+jwt":
                    return None
                # The JWKS fetch is blocking; it happens once (keys are cached).
                key = jwks.get_signing_key_from_jwt(token)
                claims = jwt.decode(
                    token,
                    key.key,
                    algorithms=["ES256"],
                    issuer=args.issuer,
                    audience=args.resource,
                    options={"require": ["exp", "iss", "aud", "sub"]},
                )
            except jwt.PyJWTError:
                return None
            return AccessToken(
                token=token,
                client_id=str(claims.get("client_id", "")),
                scopes=str(claims.get("scope", "")).split(),
                expires_at=int(claims["exp"]),
                resource=args.resource,
                subject=claims.get("sub"),
            )

    server = MCPServer(
        "bench-py-peer",
        token_verifier=JwtVerifier(),
        auth=AuthSettings(
            issuer_url=args.issuer,
            resource_server_url=args.resource,
            validate_token_resource=True,
        ),
        log_level="WARNING",
    )

    @server.tool()
    def echo(text: str) -> str:
        """Returns its text argument."""
        return text

    app = server.streamable_http_app(host="127.0.0.1")
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning")
    uv = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(uv.serve())
        while not uv.started:
            if task.done():
                await task
                return
            await asyncio.sleep(0.02)
        print("ready", flush=True)
        await task

    asyncio.run(serve())
    sys.exit(0)


if __name__ == "__main__":
    main()
